"""A new dataset in minutes (issue 14): tools/new_recipe.sh NAME copies egs/TEMPLATE,
and the new recipe runs stages 1-2 (prepare, validate) on a folder of three clips."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tools", "new_recipe.sh")


@pytest.fixture
def new_recipe():
    name = f"pytest_new_recipe_{os.getpid()}"
    target = os.path.join(REPO, "egs", name)
    try:
        yield name, target
    finally:
        shutil.rmtree(target, ignore_errors=True)


def three_clips(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for index, text in enumerate(["hello world", "good morning", "see you soon"]):
        soundfile.write(str(folder / f"clip{index}.wav"),
                        (0.1 * rng.standard_normal(16000 + 4000 * index)).astype("float32"),
                        16000)
        lines.append(f"clip{index}.wav\t{text}")
    (folder / "answers.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_new_recipe_prepares_and_validates_three_clips(tmp_path, new_recipe):
    name, target = new_recipe
    made = subprocess.run(["bash", SCRIPT, name], capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    assert f"made egs/{name}" in made.stdout
    for path in ("run.sh", "cmd.sh", "README.md", "local/prepare.py", "conf/train.yaml",
                 "conf/decode.yaml"):
        assert os.path.isfile(os.path.join(target, path)), path
    assert "TEMPLATE" not in open(os.path.join(target, "run.sh")).read()
    data = three_clips(tmp_path / "corpus")
    # stage 2's features step builds the model and runs its base encoder: tiny random
    # models stand in for the bundled ones (stage 0, which provisions it, is not run here)
    pretrained = tmp_path / "pretrained"
    make_tiny_whisper(str(pretrained / "whisper-tiny.en"))
    make_tiny_llama(str(pretrained / "smollm2-135m-instruct"))
    env = dict(os.environ, MOWE_PYTHON=sys.executable, PYTHONPATH=REPO)
    run = subprocess.run(["bash", "run.sh", "--data_folder", str(data), "--stage", "1",
                          "--stop_stage", "2", "--pretrained_dir", str(pretrained)],
                         cwd=target, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    clean = {split: json.load(open(os.path.join(target, "data", "clean", f"{split}.json")))
             for split in ("train", "valid", "test")}
    assert sorted(len(entries) for entries in clean.values()) == [1, 1, 1]
    entry = next(iter(clean["train"].values()))
    assert entry["task"] == "asr" and entry["answer"] == "see you soon" and entry["instruction"]
    for marker in ("2.validate", "2.features"):  # stage 2: validate, then cache features
        assert os.path.isfile(os.path.join(target, "exp", "default", ".done", marker)), marker
    # provenance for RESULTS.md: the command as typed and each stage's wall time
    log = os.path.join(target, "exp", "default", "log")
    assert f"run.sh --data_folder {data} --stage 1 --stop_stage 2 --pretrained_dir" in open(
        os.path.join(log, "commands.txt")).read()
    times = [line.split("\t")[:2] for line in open(os.path.join(log, "stage_times.tsv"))]
    assert times == [["1", "prepare"], ["2", "validate"], ["2", "features"]]
    # the rerun skips all three steps (.done markers)
    again = subprocess.run(["bash", "run.sh", "--data_folder", str(data), "--stage", "1",
                            "--stop_stage", "2", "--pretrained_dir", str(pretrained)],
                           cwd=target, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and again.stdout.count("already done") == 3


def test_stage_2_keeps_only_the_recipe_tasks(tmp_path, new_recipe):
    """Stage 2 validates with the recipe's own task names (conf/train.yaml's tasks:), as
    training reads them: a recipe declared for ER whose data is ASR stops at stage 2,
    naming the skipped entries' reason and count, instead of training on nothing."""
    name, target = new_recipe
    assert subprocess.run(["bash", SCRIPT, name], capture_output=True, timeout=30).returncode == 0
    config = os.path.join(target, "conf", "train.yaml")
    text = open(config).read()
    assert "tasks: [asr, er, aqa, sqa, ac]" in text
    with open(config, "w") as handle:
        handle.write(text.replace("tasks: [asr, er, aqa, sqa, ac]", "tasks: [er]"))
    data = three_clips(tmp_path / "corpus")
    env = dict(os.environ, MOWE_PYTHON=sys.executable, PYTHONPATH=REPO)
    run = subprocess.run(["bash", "run.sh", "--data_folder", str(data), "--stage", "1",
                          "--stop_stage", "2", "--pretrained_dir", str(tmp_path / "none")],
                         cwd=target, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode != 0
    log = open(os.path.join(target, "exp", "default", "log", "validate.log")).read()
    assert "task names from conf/train.yaml: er" in log
    assert "no usable clip in data/raw/train.json: skipped 1 (unknown task: 1); the task " \
        "names allowed: er" in log
    assert not os.path.isfile(os.path.join(target, "exp", "default", ".done", "2.validate"))


@pytest.mark.parametrize("args,message", [
    (["TEMPLATE"], "NAME must be lower-case"),
    (["synthetic"], "already exists"),
    ([], "usage:"),
])
def test_new_recipe_refuses_bad_names(args, message):
    result = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr
