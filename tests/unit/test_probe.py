"""Linear probes (mowe/analysis/linear_probe.py) and the ``probe`` command of mowe.analysis.diagnostics."""

import json
import os

import numpy as np
import soundfile
import torch
import yaml

from conftest import REPO, load_spec, tiny_overrides
from mowe.analysis.linear_probe import EVENT_KINDS, chance, clip_labels, linear_probe, probe_model


def test_a_probe_finds_a_planted_signal_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    noise = torch.randn(400, 32, generator=generator)
    planted = noise.clone()
    planted[:, 5] += 4.0 * (labels == 1).float() - 4.0 * (labels == 2).float()
    planted[:, 9] += 4.0 * (labels == 3).float()
    train, test = slice(0, 300), slice(300, 400)
    assert linear_probe(planted[train], labels[train], planted[test], labels[test]) > 0.85
    noise_score = linear_probe(noise[train], labels[train], noise[test], labels[test])
    assert abs(noise_score - chance(labels[test])) < 0.15


def test_labels_come_from_the_manifest_fields():
    assert clip_labels({"task": "er", "answer": "Sad"}) == {"emotion": "sad"}
    events = clip_labels({"task": "ac", "scene": "high beep|low hum|low beep|4000"})["events"]
    assert events == tuple(int(k in ("tone", "hum")) for k in EVENT_KINDS)
    assert clip_labels({"task": "asr", "answer": "hi"}) == {}


def write_clips(folder, split, count):
    """ER clips whose label is planted in the loudness (quiet/loud), and sound scenes."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    entries = {}
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        t = np.arange(8000) / 16000
        loud = index % 2
        audio = (0.6 if loud else 0.01) * np.sin(2 * np.pi * rng.uniform(200, 400) * t)
        path = folder / f"{split}_er_{index}.wav"
        soundfile.write(str(path), audio.astype(np.float32), 16000)
        entries[f"{split}_er_{index}"] = {"wav": str(path), "duration": 0.5, "task": "er",
                                          "instruction": "Which emotion?",
                                          "answer": "angry" if loud else "sad"}
        hum = index % 3 == 0
        scene = 0.3 * np.sin(2 * np.pi * (60 if hum else 1500) * t)
        path = folder / f"{split}_ac_{index}.wav"
        soundfile.write(str(path), scene.astype(np.float32), 16000)
        entries[f"{split}_ac_{index}"] = {
            "wav": str(path), "duration": 0.5, "task": "ac", "instruction": "Caption?",
            "answer": "a hum" if hum else "a beep",
            "scene": ("low hum" if hum else "high beep") + "|8000"}
    return entries


def test_probe_model_reports_every_representation(tiny_models, tmp_path):
    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    train = write_clips(tmp_path / "audio", "train", 24)
    test = write_clips(tmp_path / "audio", "test", 12)
    results = probe_model(model, train, test, batch_size=8)
    assert set(results) == {"emotion", "events"}
    emotion = results["emotion"]
    assert set(emotion["accuracy"]) == {"base", "weak0", "weak1", "weak2", "weak3", "mixture",
                                        "adapter_input", "audio_tokens"}
    assert emotion["train_clips"] == 24 and emotion["test_clips"] == 12
    assert emotion["chance"] == 0.5
    assert emotion["accuracy"]["base"] >= 0.9, "silence against a loud tone"


def test_probe_command_at_init_and_after_training(tiny_models, tmp_path, capsys):
    from mowe.analysis.diagnostics import main

    data = tmp_path / "data"
    for split, count in (("train", 16), ("test", 8), ("valid", 4)):
        entries = write_clips(data / "audio", split, count)
        (data / f"{split}.json").write_text(json.dumps(entries))
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    os.symlink(tiny_models["whisper"], pretrained / "whisper-tiny.en")
    os.symlink(tiny_models["llama"], pretrained / "smollm2-135m-instruct")
    spec = tiny_overrides(tiny_models)
    del spec["base_encoder_source"], spec["pretrained_cache"]
    config = os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml")
    common = [f"--config={config}", f"--output_folder={tmp_path / 'exp'}",
              f"--data_folder={data}", f"--pretrained_dir={pretrained}",
              "--spec=" + yaml.safe_dump(spec, default_flow_style=True)]
    # a checkpoint as training saves it: the model with changed weights
    from mowe.recipe.hparams import load_recipe_hparams

    hparams = load_recipe_hparams([config] + common[1:])[3]
    with torch.no_grad():
        hparams["model"].adapter.linear.weight.mul_(0.0)
    ckpt = tmp_path / "exp" / "save" / "CKPT+1"
    ckpt.mkdir(parents=True)
    hparams["model"].save_checkpoint(str(ckpt / "model.ckpt"))
    (ckpt / "CKPT.yaml").write_text("loss: 1.0\n")
    assert main(["probe", *common, f"--checkpoint={tmp_path / 'exp' / 'save'}",
                 f"--out={tmp_path / 'probe'}"]) == 0
    record = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert set(record["results"]) == {"init", "trained"}
    trained = record["results"]["trained"]["emotion"]["accuracy"]
    init = record["results"]["init"]["emotion"]["accuracy"]
    assert trained["base"] == init["base"], "the frozen base encoder did not change"
    assert trained["audio_tokens"] == 0.5, "a zeroed adapter carries nothing: chance"
    table = (tmp_path / "probe" / "probe.md").read_text()
    assert "| emotion | adapter_input |" in table and "init | trained" in table
