"""Non-finite audio, losses and gradients never reach the weights or a checkpoint.

Issue 17, case 1: a train manifest with a NaN clip and an inf clip used to end with
rc 0, NaN weights and a checkpoint scored 0.0. Now such clips are skipped and counted
at load time, a non-finite step is skipped, and too many in a row stop training."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import load_spec
from conftest import make_brain, padded_batch
from mowe.train.brain import NonFiniteLossError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml")


def trainable_copy(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def nan_loss_objectives(brain, bad_calls):
    """Wrap ``compute_objectives`` so the calls numbered in ``bad_calls`` give NaN."""
    original, calls = brain.compute_objectives, {"n": 0}

    def objectives(outputs, batch, stage):
        loss = original(outputs, batch, stage)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] in bad_calls else loss

    brain.compute_objectives = objectives


def test_a_nan_loss_step_is_skipped_and_leaves_the_weights(tiny_models, audio_batch):
    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    brain = make_brain(model)
    brain.init_optimizers()
    batch = padded_batch(audio_batch)
    brain.fit_batch(batch)  # one good step (the optimizer state exists)
    before = trainable_copy(model)
    nan_loss_objectives(brain, bad_calls={1})
    brain.step = 1
    loss = brain.fit_batch(batch)
    assert not torch.isfinite(loss)
    assert brain.skipped_steps == 1 and brain.optimizer_step == 1
    after = trainable_copy(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.grad is None for p in model.parameters())
    good = brain.fit_batch(batch)  # the next finite batch steps again
    assert torch.isfinite(good) and brain.optimizer_step == 2
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_nonfinite_gradients_with_a_finite_loss_are_skipped(tiny_models, audio_batch):
    model = load_spec(tiny_models)["model"]
    brain = make_brain(model)
    brain.init_optimizers()
    before = trainable_copy(model)
    parameter = next(p for p in model.parameters() if p.requires_grad)
    parameter.register_hook(lambda grad: grad * float("inf"))
    assert torch.isfinite(brain.fit_batch(padded_batch(audio_batch)))
    assert brain.skipped_steps == 1
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters()
               if p.requires_grad)


def test_patience_stops_after_too_many_skipped_steps_in_a_row(tiny_models, audio_batch):
    model = load_spec(tiny_models)["model"]
    brain = make_brain(model)
    brain.init_optimizers()
    assert brain.nonfinite_patience == 3  # SpeechBrain's default
    nan_loss_objectives(brain, bad_calls={1, 2, 4, 5, 6, 7})
    batch = padded_batch(audio_batch)
    for _ in range(3):  # NaN, NaN, good: the count in a row restarts
        brain.fit_batch(batch)
    assert brain.skipped_steps == 2 and brain.optimizer_step == 1
    for _ in range(3):
        brain.fit_batch(batch)
    with pytest.raises(NonFiniteLossError, match="4 optimizer steps in a row"):
        brain.fit_batch(batch)


def test_running_mean_and_validation_score_use_finite_losses_only(tiny_models):
    brain = make_brain(load_spec(tiny_models)["model"])
    brain.on_stage_start(__import__("speechbrain").Stage.VALID, 1)
    average = 0.0
    for value in (2.0, float("nan"), 4.0):
        brain.step += 1
        average = brain.update_average(torch.tensor(value), average)
    assert average == pytest.approx(3.0)
    brain.on_stage_start(__import__("speechbrain").Stage.VALID, 1)
    for _ in range(2):
        brain.update_average(torch.tensor(float("nan")), 0.0)
    with pytest.raises(NonFiniteLossError, match="no validation batch gave a finite loss"):
        brain._check_validation_loss(1)


@pytest.fixture(scope="module")
def poisoned_setup(tmp_path_factory):
    """Tiny pretrained folder; a train manifest with one NaN and one inf float wav."""
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    root = tmp_path_factory.mktemp("nonfinite")
    pretrained = root / "pretrained"
    make_tiny_pretrained_dir(str(pretrained))
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("valid", 2)):
        entries = {}
        for index in range(count):
            samples = (0.1 * rng.standard_normal(6000)).astype("float32")
            if split == "train" and index == 1:
                samples[100] = np.nan
            if split == "train" and index == 4:
                samples[200] = np.inf
            wav = str(data / f"{split}_{index}.wav")
            soundfile.write(wav, samples, 16000, subtype="FLOAT")
            entries[f"{split}_{index}"] = {"wav": wav, "duration": 6000 / 16000,
                                           "task": "asr", "instruction": "Transcribe.",
                                           "answer": "hello world"}
        (data / f"{split}.json").write_text(json.dumps(entries))
    return root, pretrained, data


def test_train_skips_nonfinite_clips_and_saves_finite_weights(poisoned_setup, tmp_path):
    _, pretrained, data = poisoned_setup
    out = tmp_path / "exp"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "train.py"), CONFIG,
         f"--output_folder={out}", f"--data_folder={data}", f"--pretrained_dir={pretrained}",
         "--number_of_epochs=1", "--batch_size=2", "--global_batch_size=2", "--seed=3",
         "--spec={mixture: null}"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "skipping clip train_1: audio file holds NaN or infinite samples" in output
    assert "skipping clip train_4" in output
    assert "skipped 2 clips whose audio could not be used" in output
    save = out / "save"
    checkpoint = sorted(d for d in os.listdir(save) if d.startswith("CKPT"))[-1]
    meta = yaml.safe_load((save / checkpoint / "CKPT.yaml").read_text())
    assert math.isfinite(meta["loss"]) and meta["loss"] > 0
    weights = torch.load(save / checkpoint / "model.ckpt", weights_only=True)
    assert all(bool(torch.isfinite(t).all()) for t in weights.values()
               if torch.is_tensor(t) and t.is_floating_point())
    trace = [json.loads(line) for line in open(out / "loss_trace.jsonl")]
    assert trace and all(math.isfinite(row["loss"]) for row in trace)
