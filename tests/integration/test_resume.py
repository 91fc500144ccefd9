"""Full resume: a training run killed with SIGKILL mid-epoch and restarted ends with the
same weights as an uninterrupted run; SIGTERM checkpoints before exiting; a decode
killed midway only decodes the rest when rerun. Real processes, tiny models."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from recipe_runs import CONFIG, REPO, command, final_weights, setup, trace  # noqa: F401


def run_until(cmd, out, steps, sig, timeout=300):
    """Start ``cmd``, send ``sig`` once the loss trace has ``steps`` lines."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO)
    start = time.time()
    while len(trace(out)) < steps:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.time() - start < timeout
        time.sleep(0.05)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(setup, tmp_path):
    reference = tmp_path / "uninterrupted"
    result = subprocess.run(command("train.py", setup, reference), capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [row["optimizer_step"] for row in trace(reference)]
    assert steps == list(range(1, 13))  # 12 clips / batch 2 x 2 epochs

    killed = tmp_path / "killed"
    code, _ = run_until(command("train.py", setup, killed), killed, 8, signal.SIGKILL)
    assert code == -signal.SIGKILL
    before = [row["optimizer_step"] for row in trace(killed)]
    # as if the kill came after tracing a step but before checkpointing it (and cut the
    # next line in half): that step is redone on resume and must not be traced twice
    with open(killed / "loss_trace.jsonl", "a") as handle:
        handle.write(json.dumps({"optimizer_step": before[-1] + 1, "epoch": 2,
                                 "loss": 0.0}) + '\n{"optimizer_st')
    result = subprocess.run(command("train.py", setup, killed), capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    after = [row["optimizer_step"] for row in trace(killed)][len(before):]
    # the step counter continues from the last checkpoint (at most one step is redone)
    assert after and after[0] >= before[-1] and after[-1] == 12
    # the trace holds every step exactly once, as an uninterrupted run's does
    assert [row["optimizer_step"] for row in trace(killed)] == list(range(1, 13))
    reference_weights, resumed_weights = final_weights(reference), final_weights(killed)
    assert reference_weights.keys() == resumed_weights.keys()
    for key, value in reference_weights.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(resumed_weights[key], value, rtol=0, atol=1e-6)
    # the losses of the redone and later steps equal the uninterrupted run's
    reference_loss = {row["optimizer_step"]: row["loss"] for row in trace(reference)}
    for row in trace(killed)[len(before):]:
        assert row["loss"] == pytest.approx(reference_loss[row["optimizer_step"]], abs=1e-5)


def test_crafted_checkpoint_file_does_not_run_on_resume(setup, tmp_path):
    """A pickle planted in an experiment folder is refused with one error line; the code
    it carries never runs."""
    out = tmp_path / "planted"
    cmd = command("train.py", setup, out, "--ckpt_interval_steps=0")
    code, output = run_until(cmd, out, 2, signal.SIGTERM)  # one intra-epoch checkpoint,
    assert code == 75, output[-3000:]  # whose files are all loaded on resume
    save = out / "save"
    newest = sorted(d for d in os.listdir(save) if d.startswith("CKPT"))[-1]
    marker = tmp_path / "code_ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("random_states.ckpt", "training_statistics.ckpt"):
        planted = save / newest / name
        original = planted.read_bytes()
        torch.save({"torch": RunsCode(), "sums": RunsCode()}, str(planted))
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert result.returncode != 0
        assert not marker.exists(), name
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(planted) in errors[0] and "refused" in errors[0]
        assert "Traceback" not in result.stderr
        planted.write_bytes(original)


def test_sigterm_checkpoints_before_exit(setup, tmp_path):
    out = tmp_path / "terminated"
    cmd = command("train.py", setup, out, "--ckpt_interval_steps=0")  # no periodic saves
    code, output = run_until(cmd, out, 3, signal.SIGTERM)
    assert code == 75, output[-3000:]
    assert "SIGTERM" in output and "saved a checkpoint at optimizer step" in output
    save = out / "save"
    checkpoints = [d for d in os.listdir(save) if d.startswith("CKPT")]
    assert len(checkpoints) == 1
    meta = (save / checkpoints[0] / "CKPT.yaml").read_text()
    assert "INTRA_EPOCH" in meta.upper() or "intra" in meta.lower()
    done = len(trace(out))
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [row["optimizer_step"] for row in trace(out)]
    assert steps[done:][0] == steps[done - 1] + 1 and steps[-1] == 12  # nothing redone


def test_decode_killed_midway_only_decodes_the_rest(setup, tmp_path):
    out = tmp_path / "decoded"
    result = subprocess.run(command("train.py", setup, out, "--number_of_epochs=1"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    hyps = out / "hyps.jsonl"
    process = subprocess.Popen(command("decode.py", setup, out, "--batch_size=1",
                                       "--decode_batch_size=1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=REPO)
    start = time.time()
    while not hyps.exists() or len(hyps.read_text().splitlines()) < 3:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.time() - start < 300
        time.sleep(0.02)
    process.kill()
    process.wait()
    with open(hyps, "a") as handle:  # as if the kill cut a line in half
        handle.write('{"id": "test_0')
    first = [json.loads(line)["id"] for line in hyps.read_text().splitlines()[:-1]]
    result = subprocess.run(command("decode.py", setup, out, "--batch_size=1",
                                    "--decode_batch_size=1"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"decoding {9 - len(first)} utterances ({len(first)} done before)" in result.stderr
    ids = [json.loads(line)["id"] for line in hyps.read_text().splitlines()]
    assert sorted(ids) == [f"test_{i:02d}" for i in range(9)]  # each exactly once
    assert ids[:len(first)] == first
