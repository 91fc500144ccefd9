"""Tiny training runs through the recipes' entry points, shared by the resume, fault,
distributed, validation and MoE-adapter tests: a fake pretrained folder with data (the
``setup`` fixture) and the commands that train and decode on it."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/..
CONFIG = os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml")
TASKS = [("asr", "Transcribe.", "hello world"), ("er", "Emotion?", "happy"),
         ("aqa", "How many beeps?", "two")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake pretrained folder holding tiny models under the offline names, and data."""
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    root = tmp_path_factory.mktemp("resume")
    pretrained = root / "pretrained"
    make_tiny_pretrained_dir(str(pretrained))
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("valid", 3), ("test", 9)):
        entries = {}
        for index in range(count):
            task, instruction, answer = TASKS[index % 3]
            wav = str(data / f"{split}_{index}.wav")
            soundfile.write(wav, (0.1 * rng.standard_normal(4000 + 400 * index))
                            .astype("float32"), 16000)
            entries[f"{split}_{index:02d}"] = {"wav": wav, "duration": (4000 + 400 * index)
                                               / 16000, "task": task,
                                               "instruction": instruction, "answer": answer}
        (data / f"{split}.json").write_text(json.dumps(entries))
    return root, pretrained, data


def command(script, setup, out, *extra):
    """train.py / decode.py on the tiny setup; ``extra`` ``--key=value`` replace defaults."""
    root, pretrained, data = setup
    options = dict(arg.split("=", 1) for arg in (
        f"--output_folder={out}", f"--data_folder={data}", f"--pretrained_dir={pretrained}",
        "--number_of_epochs=2", "--batch_size=2", "--global_batch_size=2",
        "--ckpt_interval_minutes=0", "--ckpt_interval_steps=1", "--max_new_tokens=4",
        "--seed=7", *extra))
    return [sys.executable, os.path.join(REPO, "recipes", script), CONFIG,
            *[f"{key}={value}" for key, value in options.items()]]


def trace(out):
    path = os.path.join(out, "loss_trace.jsonl")
    if not os.path.isfile(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def final_weights(out):
    save = os.path.join(out, "save")
    newest = sorted(d for d in os.listdir(save) if d.startswith("CKPT"))[-1]
    return torch.load(os.path.join(save, newest, "model.ckpt"), weights_only=True)
