"""CTC warm-up of the audio front end (mowe/train/ctc_warmup.py): the head tied to the LLM's
embeddings, the loss's handling of clips that cannot fit, and the warm-up as
``recipes/train.py`` runs it (tiny models, real processes): it trains the front end and
not the LLM, logs its greedy-CTC WER, checkpoints, resumes and is skipped once the
multitask run has checkpoints."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from mowe.train.ctc_warmup import (EmbeddingTiedCTCHead, collapse_ctc, ctc_loss, ctc_min_frames)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml")
TASKS = [("asr", "Transcribe.", "hello world"), ("er", "Emotion?", "happy"),
         ("asr", "Transcribe.", "the quick brown fox")]


def test_head_scores_against_the_table_without_training_it():
    table = torch.randn(12, 8, requires_grad=True)
    head = EmbeddingTiedCTCHead(8)
    tokens = torch.randn(2, 5, 8, requires_grad=True)
    logits = head(tokens, table)
    assert logits.shape == (2, 5, 13) and logits.dtype == torch.float32
    # class v + 1 is the dot product with embedding row v; class 0 with the blank vector
    torch.testing.assert_close(logits[..., 1:], (tokens @ table.T).detach())
    torch.testing.assert_close(logits[..., 0], torch.zeros(2, 5))
    logits.logsumexp(-1).sum().backward()
    assert table.grad is None  # the LLM's embeddings stay frozen
    assert tokens.grad is not None and head.blank.grad is not None
    assert set(head.state_dict()) == {"blank"}  # its checkpoint does not copy the table


def test_greedy_collapse_and_frames_needed():
    assert collapse_ctc([0, 0, 5, 5, 0, 5, 1, 0]) == [4, 4, 0]
    assert collapse_ctc([0, 0]) == []
    assert ctc_min_frames([3, 3, 3]) == 5 and ctc_min_frames([1, 2, 3]) == 3


def test_loss_leaves_out_and_counts_clips_that_cannot_fit():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, requires_grad=True)
    lens = torch.tensor([4, 4, 2])
    targets = [[1, 2], [3, 3, 3], [2, 4, 1]]  # 2nd needs 5 frames, 3rd 3 of 2
    loss, unfit = ctc_loss(logits, lens, targets)
    assert unfit == 2
    expected = torch.nn.functional.ctc_loss(
        logits[:1].log_softmax(-1).transpose(0, 1), torch.tensor([2, 3]), lens[:1],
        torch.tensor([2]), blank=0)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[1:].abs().sum() == 0  # the left-out clips get no gradient
    empty, unfit = ctc_loss(logits, lens, [[], [3, 3, 3], [2, 4, 1]])
    assert unfit == 3 and torch.isnan(empty)  # the Brain skips and counts such a batch


# ----------------------------------------------------------- as train.py runs it
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny models under the offline names, and 12 training clips (8 of them ASR)."""
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    root = tmp_path_factory.mktemp("ctc_warmup")
    pretrained = root / "pretrained"
    make_tiny_pretrained_dir(str(pretrained))
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("valid", 3), ("test", 3)):
        entries = {}
        for index in range(count):
            task, instruction, answer = TASKS[index % 3]
            wav = str(data / f"{split}_{index}.wav")
            samples = 8000 + 400 * index
            soundfile.write(wav, (0.1 * rng.standard_normal(samples)).astype("float32"),
                            16000)
            entries[f"{split}_{index:02d}"] = {"wav": wav, "duration": samples / 16000,
                                               "task": task, "instruction": instruction,
                                               "answer": answer}
        (data / f"{split}.json").write_text(json.dumps(entries))
    return pretrained, data


def train(setup, out, *extra):
    pretrained, data = setup
    options = dict(arg.split("=", 1) for arg in (
        f"--output_folder={out}", f"--data_folder={data}", f"--pretrained_dir={pretrained}",
        "--number_of_epochs=1", "--batch_size=2", "--global_batch_size=2",
        "--ckpt_interval_minutes=0", "--seed=3", "--ctc_warmup_epochs=3",
        "--ctc_warmup_batch_size=4", "--ctc_warmup_lr=0.001", *extra))
    result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "train.py"),
                             CONFIG, *[f"{k}={v}" for k, v in options.items()]],
                            capture_output=True, text=True, cwd=REPO)
    return result


def warmup_epochs(out):
    """``(epoch, train loss, valid loss, ctc_wer)`` rows of the warm-up log."""
    rows = []
    for line in open(os.path.join(out, "ctc_warmup_log.txt")):
        match = re.search(r"epoch: (\d+) - train loss: ([\d.e+-]+).*valid loss: ([\d.e+-]+)"
                          r".*valid ctc_wer: ([\d.e+-]+)", line)
        assert match, line
        rows.append((int(match[1]), *map(float, match.groups()[1:])))
    return rows


def checkpoint(folder):
    newest = sorted(d for d in os.listdir(folder) if d.startswith("CKPT"))[-1]
    return torch.load(os.path.join(folder, newest, "model.ckpt"), weights_only=True)


def test_warmup_trains_the_front_end_then_multitask_training_starts_from_it(setup, tmp_path):
    out = tmp_path / "run"
    result = train(setup, out)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "CTC warm-up of the audio front end: 3 epoch(s) over 8 asr clips (2 validation)" \
        in log
    rows = warmup_epochs(out)
    assert [row[0] for row in rows] == [1, 2, 3]
    assert rows[-1][1] < rows[0][1]  # the CTC loss goes down on these 8 clips
    assert all(0 <= row[3] for row in rows)  # greedy-CTC WER of the validation clips
    warm = checkpoint(out / "save" / "ctc_warmup")
    final = checkpoint(out / "save")
    lora = [key for key in warm if "lora_B" in key]
    assert lora and all(warm[key].abs().sum() == 0 for key in lora)  # LLM untouched
    assert any(final[key].abs().sum() > 0 for key in lora)  # multitask training trains it
    adapter = [key for key in warm if key.startswith("adapter.")]
    assert adapter and all(not torch.equal(warm[key], final[key]) for key in adapter)
    assert log.index("CTC warm-up of the audio front end") < log.index("training on 12 clips")

    # rerun: the multitask run has checkpoints, so the warm-up is neither rerun nor loaded
    result = train(setup, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CTC warm-up skipped: the multitask run has checkpoints" in \
        (out / "log.txt").read_text()
    assert len(warmup_epochs(out)) == 3


def test_finished_warmup_is_loaded_and_extended_not_redone(setup, tmp_path):
    out = tmp_path / "run"
    result = train(setup, out, "--number_of_epochs=0", "--ctc_warmup_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row[0] for row in warmup_epochs(out)] == [1, 2]
    first = checkpoint(out / "save" / "ctc_warmup")
    result = train(setup, out, "--number_of_epochs=0", "--ctc_warmup_epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row[0] for row in warmup_epochs(out)] == [1, 2, 3]  # epoch 3 only was run
    assert any(not torch.equal(first[k], v) for k, v in
               checkpoint(out / "save" / "ctc_warmup").items() if k.startswith("adapter."))


def test_warmup_without_clips_of_its_tasks_says_so(setup, tmp_path):
    result = train(setup, tmp_path / "run", "--ctc_warmup_tasks=[sqa]")
    assert result.returncode != 0
    assert "no clips of the tasks ['sqa'] (ctc_warmup_tasks)" in result.stderr
    assert "Traceback" not in result.stderr


def test_warmup_runs_under_ddp(setup, tmp_path):
    """Two gloo processes (the front end goes through the DDP wrapper): the warm-up
    trains, validates and checkpoints. (Equality with one process is not checked here.)"""
    pretrained, data = setup
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(REPO, "recipes", "train.py"), CONFIG, f"--output_folder={out}",
           f"--data_folder={data}", f"--pretrained_dir={pretrained}", "--number_of_epochs=0",
           "--batch_size=2", "--global_batch_size=4", "--ckpt_interval_minutes=0",
           "--seed=3", "--ctc_warmup_epochs=1", "--ctc_warmup_batch_size=2",
           "--distributed_backend=gloo"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row[0] for row in warmup_epochs(out)] == [1]
    assert any(name.startswith("CKPT") for name in os.listdir(out / "save" / "ctc_warmup"))
