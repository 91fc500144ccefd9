"""Specialist weak encoders (mowe/train/specialists.py) and the pool that uses them."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import REPO
from mowe.models.encoders import load_small_encoder
from mowe.train.specialists import emotion_clip, pretrain, scene_clip, train_specialist

TINY = {"d_model": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0}


def planted(count, seed=0):
    """Two classes a listener tells apart at once: quiet noise, loud 300 Hz tone."""
    rng = np.random.default_rng(seed)
    items = []
    for index in range(count):
        t = np.arange(int(16000 * rng.uniform(0.4, 0.8))) / 16000
        if index % 2:
            audio = 0.5 * np.sin(2 * np.pi * 300 * t)
        else:
            audio = 0.01 * rng.standard_normal(len(t))
        items.append((audio.astype(np.float32), index % 2))
    return items


def test_a_specialist_learns_a_planted_label():
    encoder, report = train_specialist("emotion", planted(48), planted(16, seed=1), epochs=6,
                                       lr=3e-3, batch_size=8, encoder_config=TINY)
    assert report["test_accuracy"] == 1.0
    assert report["train_loss"][-1] < report["train_loss"][0]
    assert encoder.output_dim == 16


def test_corpora_are_not_the_multitask_corpus():
    from mowe.synth import scenes, speech

    audio, label = emotion_clip(3, seed=7)
    assert audio.dtype == np.float32 and len(audio) > 8000 and label == 3
    again, _ = emotion_clip(3, seed=7)
    assert np.array_equal(audio, again)  # deterministic by (index, seed)
    audio, target = scene_clip(0, seed=7)
    assert target.shape == (len(scenes.EVENT_KINDS),) and target.sum() >= 1
    assert set(speech.EMOTIONS) == {"neutral", "happy", "sad", "angry"}


def test_pretrained_specialists_load_into_the_specialist_pool(tiny_models, tmp_path):
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    os.symlink(tiny_models["whisper"], pretrained / "whisper-tiny.en")
    os.symlink(tiny_models["llama"], pretrained / "smollm2-135m-instruct")
    reports = pretrain(str(pretrained / "specialists"), clips=12, epochs=1,
                       encoder_config=TINY)
    assert set(reports) == {"emotion", "scenes"}
    saved = json.loads((pretrained / "specialists" / "emotion" / "config.json").read_text())
    assert saved["d_model"] == 16
    # kept on a second run (stage 0 is rerun by every recipe run)
    again = pretrain(str(pretrained / "specialists"), clips=12, epochs=1, encoder_config=TINY)
    assert again["emotion"]["wall_seconds"] == reports["emotion"]["wall_seconds"]
    emotion = load_small_encoder(str(pretrained / "specialists" / "emotion"))
    assert emotion.from_source
    # the recipe's overrides file on the tiny models, loaded as recipes/train.py loads it
    import yaml

    from conftest import tiny_overrides
    from mowe.recipe.hparams import load_recipe_hparams

    spec = tiny_overrides(tiny_models)
    del spec["base_encoder_source"], spec["pretrained_cache"]
    argv = [os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
            f"--output_folder={tmp_path / 'exp'}", f"--data_folder={tmp_path}",
            f"--pretrained_dir={pretrained}", "--spec=" + yaml.safe_dump(spec,
                                                                        default_flow_style=True),
            "--overrides_file=" + os.path.join(REPO, "recipes", "conf", "model",
                                               "specialist_pool.yaml")]
    hparams = load_recipe_hparams(argv)[3]
    mixture = hparams["model"].mixture
    assert [type(e).__name__ for e in mixture.encoders] == [
        "WhisperEncoder", "WhisperEncoder", "SmallEncoder", "SmallEncoder"]
    assert mixture.routers[0].w_indep.detach().tolist() == [-1.0, -1.0, 1.0, -1.0]
    torch.testing.assert_close(mixture.encoders[2].state_dict()["conv1.weight"],
                               emotion.state_dict()["conv1.weight"])
    assert hparams["param_groups"]["pretrained"]["lr"] == pytest.approx(5e-5)


def test_a_missing_or_foreign_specialist_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="mowe specialists"):
        load_small_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"kind": "small", "d_model": "__import__"}))
    (tmp_path / "encoder.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="must be a number"):
        load_small_encoder(str(tmp_path))
