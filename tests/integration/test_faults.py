"""Fault injection: SIGKILL at random points (a fixed seed list) in training, decoding,
corpus synthesis and model provisioning; a rerun must finish with exactly the outputs
of an uninterrupted run and leave no ``.partial``/``.tmp`` file behind (issue 17).

Each kill time is drawn uniformly from the middle of the uninterrupted run's wall time
(measured in the same test), so kills land in imports, model loading, the work itself
or the final writes; the count and every wait are bounded."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from recipe_runs import command, final_weights, setup  # noqa: F401  (fixture)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILL_SEEDS = (101, 202)
TIMEOUT = 600


def run(cmd, **kwargs):
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT,
                            **kwargs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return time.time() - start


def kill_after(cmd, seconds):
    """Start ``cmd``, SIGKILL it after ``seconds`` (if still running); True if killed."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=REPO, start_new_session=True)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the process and any worker it spawned
        process.wait(timeout=60)
        return True


def kill_times(reference_seconds):
    return [random.Random(seed).uniform(0.3, 0.95) * reference_seconds
            for seed in KILL_SEEDS]


def leftovers(folder):
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if name.endswith((".partial", ".tmp")) or ".partial" in root]


def tree_digest(folder, ignore=()):
    """``{relative path: sha256}`` of every file under ``folder``."""
    digest = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative in ignore:
                continue
            with open(path, "rb") as handle:
                digest[relative] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def manifests_without_root(folder):
    """The corpus manifests with the output folder taken out of the wav paths."""
    result = {}
    for split in ("train", "valid", "test"):
        with open(os.path.join(folder, f"{split}.json"), encoding="utf-8") as handle:
            text = handle.read().replace(str(folder), "<out>")
        result[split] = json.loads(text)
    return result


def test_synthesis_killed_at_random_points_then_rerun(tmp_path):
    def synth(out):
        return [sys.executable, "-m", "mowe.synth", "--out", str(out), "--size", "tiny",
                "--seed", "5", "--jobs", "2"]

    reference = tmp_path / "reference"
    seconds = run(synth(reference))
    expected = tree_digest(reference, ignore={"train.json", "valid.json", "test.json"})
    for number, delay in enumerate(kill_times(seconds)):
        out = tmp_path / f"killed{number}"
        kill_after(synth(out), delay)
        run(synth(out))
        assert leftovers(out) == []
        assert manifests_without_root(out) == manifests_without_root(reference)
        assert tree_digest(out, ignore={"train.json", "valid.json", "test.json"}) == expected


def test_provisioning_killed_at_random_points_then_rerun(tmp_path):
    def provision(out):
        return [sys.executable, "-m", "mowe.provision.bundled_models", "--out", str(out), "--only",
                "whisper"]

    reference = tmp_path / "reference"
    seconds = run(provision(reference))
    expected = tree_digest(reference)
    for number, delay in enumerate(kill_times(seconds)):
        out = tmp_path / f"killed{number}"
        kill_after(provision(out), delay)
        run(provision(out))
        assert leftovers(out) == []
        assert tree_digest(out) == expected


def train_cmd(setup, out):  # noqa: F811
    # one epoch (6 optimizer steps, a checkpoint after each) keeps the test short
    return command("train.py", setup, out, "--number_of_epochs=1")


def test_training_and_decoding_killed_at_random_points_then_rerun(setup, tmp_path):  # noqa: F811
    reference = tmp_path / "reference"
    train_seconds = run(train_cmd(setup, reference))
    decode_seconds = run(command("decode.py", setup, reference))
    reference_weights = final_weights(reference)
    reference_hyps = {json.loads(line)["id"]: json.loads(line)
                      for line in (reference / "hyps.jsonl").read_text().splitlines()}
    for number, (train_delay, decode_delay) in enumerate(
            zip(kill_times(train_seconds), kill_times(decode_seconds))):
        out = tmp_path / f"killed{number}"
        kill_after(train_cmd(setup, out), train_delay)
        run(train_cmd(setup, out))
        weights = final_weights(out)
        assert weights.keys() == reference_weights.keys()
        for key, value in reference_weights.items():
            if torch.is_tensor(value):
                torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6)
        kill_after(command("decode.py", setup, out), decode_delay)
        run(command("decode.py", setup, out))
        lines = (out / "hyps.jsonl").read_text().splitlines()
        hyps = {json.loads(line)["id"]: json.loads(line) for line in lines}
        assert len(lines) == len(hyps) and hyps == reference_hyps
        assert leftovers(out) == []
