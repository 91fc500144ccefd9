"""egs/multitask: combine five datasets' manifests, then train the paper's configuration
(tiny local models) one step — single-stage with weighted sampling, and two-stage (ASR
first, then all tasks from its checkpoint). Plus the paper recipes' command lines."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER_TRAIN = os.path.join(REPO, "recipes", "conf", "paper", "train.yaml")
DATASETS = {"librispeech": ("asr", "Transcribe the speech.", "hello world"),
            "meld": ("er", "Which emotion? neutral, joy, sadness, anger", "The speaker sounds joyful."),
            "clotho_aqa": ("aqa", "Is there a bird?", "yes"),
            "spoken_squad": ("sqa", "Who went to the market?", "anna"),
            "audiocaps": ("ac", "Describe the audio.", "a dog barks")}


def write_dataset(folder, name, task, instruction, answer, counts):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(len(name))
    for split, count in counts.items():
        entries = {}
        for index in range(count):
            wav = os.path.join(folder, f"{split}_{index}.wav")
            soundfile.write(wav, (0.1 * rng.standard_normal(8000)).astype("float32"), 16000)
            entries[f"{split}_{index}"] = {"wav": wav, "duration": 0.5, "task": task,
                                           "instruction": instruction, "answer": answer}
        with open(os.path.join(folder, f"{split}.json"), "w") as handle:
            json.dump(entries, handle)


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    folders = []
    for name, (task, instruction, answer) in DATASETS.items():
        folder = str(root / name / "clean")
        write_dataset(folder, name, task, instruction, answer,
                      {"train": 4 if name == "librispeech" else 2, "valid": 1, "test": 1})
        folders.append(folder)
    out = root / "combined"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "egs", "multitask", "local", "prepare.py"),
         "--manifests", *folders, "--names", *DATASETS, "--save_folder", str(out), "--weights", "2", "1", "1",
         "1", "1", "--asr_only_stage1"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return root, out


def test_combined_manifests(combined):
    _, out = combined
    train = json.load(open(out / "train.json"))
    assert len(train) == 4 + 4 * 2
    assert {e["task"] for e in train.values()} == {"asr", "er", "aqa", "sqa", "ac"}
    assert len(set(train)) == len(train)  # ids made unique per dataset
    stage1 = json.load(open(out / "train_stage1.json"))
    assert len(stage1) == 4 and {e["task"] for e in stage1.values()} == {"asr"}
    weights = json.load(open(out / "sampling_weights.json"))
    assert set(weights) == set(train)
    by_task = {}
    for key, entry in train.items():
        by_task[entry["task"]] = by_task.get(entry["task"], 0) + weights[key]
    # dataset weight 2 for LibriSpeech, 1 for the others, whatever their sizes
    assert by_task["asr"] == pytest.approx(2 * by_task["er"])
    assert by_task["er"] == pytest.approx(by_task["ac"])


def train_args(models, out_dir, data_dir, *extra):
    return [sys.executable, os.path.join(REPO, "recipes", "train.py"), PAPER_TRAIN,
            f"--output_folder={out_dir}", f"--data_folder={data_dir}",
            f"--pretrained_cache={models['cache']}",
            f"--base_encoder_source={models['whisper']}",
            f"--weak_encoder_source={models['whisper']}",
            f"--llm_source={models['llama']}", "--llm_dtype=float32", "--num_workers=0",
            "--batch_size=12", "--global_batch_size=12", "--number_of_epochs=1",
            "--spec={adapter_dim: 32, lora_rank: 4, num_audio_tokens: 8, frames_per_token: 4}",
            *extra]


def test_one_training_step_single_and_two_stage(combined, tiny_models):
    root, out = combined
    single = root / "exp" / "mowe"
    result = subprocess.run(train_args(tiny_models, single, out,
                                       f"--sampling_weights={out / 'sampling_weights.json'}"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch: 1" in (single / "train_log.txt").read_text()
    assert os.listdir(single / "save")

    stage1 = root / "exp" / "mowe_asr"
    result = subprocess.run(train_args(tiny_models, stage1, out,
                                       f"--train_manifest={out / 'train_stage1.json'}"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    stage2 = root / "exp" / "mowe_stage2"
    result = subprocess.run(train_args(tiny_models, stage2, out,
                                       f"--init_from={stage1 / 'save'}"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised the model from" in result.stdout + result.stderr
    # a missing first stage is a clear error, not a traceback
    result = subprocess.run(train_args(tiny_models, root / "exp" / "x", out,
                                       f"--init_from={root / 'nowhere'}"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "init_from folder not found" in result.stderr


@pytest.mark.parametrize("name", ["librispeech", "meld", "clotho_aqa", "spoken_squad",
                                  "audiocaps", "multitask"])
def test_paper_recipe_command_lines(name):
    script = os.path.join(REPO, "egs", name, "run.sh")
    result = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--row" in result.stdout and "--llm" in result.stdout
    result = subprocess.run(["bash", script, "--row", "table9"], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "unknown --row table9" in result.stderr
    if name != "multitask":
        result = subprocess.run(["bash", script, "--stage", "1"], capture_output=True,
                                text=True)
        assert result.returncode != 0 and "--data_folder DIR" in result.stderr
