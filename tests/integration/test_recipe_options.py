"""run.sh refuses impossible options up front with exit code 2, before any stage runs
(issue 17, case 5), and parse_options.sh keeps each option's type."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(REPO, "egs", "synthetic")


def run(*args):
    env = dict(os.environ, MOWE_PYTHON=sys.executable)
    return subprocess.run(["bash", "run.sh", *args], cwd=RECIPE, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--stage", "9"], "--stage 9 does not exist: stages are 0 provision"),
    (["--stage", "8"], "6 report, 7 pack"),
    (["--stage", "4", "--stop_stage", "2"], "--stage 4 is after --stop_stage 2"),
    (["stage4"], "unexpected argument 'stage4'"),
    (["--stage", "1", "extra"], "unexpected argument 'extra'"),
    (["--size", "huge"], "--size huge is not a corpus size (choose one of: tiny"),
    (["--stage", "abc"], "--stage takes a whole number, not 'abc'"),
    (["--nj=two"], "--nj takes a whole number, not 'two'"),
    (["--no_such_option", "1"], "unknown option --no_such_option"),
    # only declared options: not the shell's variables nor the script's internals
    (["--SHELL", "x"], "unknown option --SHELL"),
    (["--tools_dir", "x"], "unknown option --tools_dir"),
    (["--PATH=/tmp"], "unknown option --PATH"),
])
def test_bad_options_are_refused_before_any_stage(args, message):
    tag = "pytest_refused"
    exp = os.path.join(RECIPE, "exp", tag)
    result = run("--tag", tag, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "stage 0" not in result.stdout and not os.path.exists(exp)


def test_boolean_options_take_true_or_false(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text(f"verbose=false count=3\n_options='verbose count'\n"
                      f". {REPO}/tools/parse_options.sh\n"
                      'echo "$verbose $count"\n')
    good = subprocess.run(["bash", str(script), "--verbose", "true", "--count=5"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip() == "true 5"
    bad = subprocess.run(["bash", str(script), "--verbose", "yes"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--verbose takes true or false, not 'yes'" in bad.stderr


def test_only_declared_options_are_accepted(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text(f"stage=1 internal=x\n_options='stage'\n. {REPO}/tools/parse_options.sh\n"
                      'echo "$stage $internal"\n')
    good = subprocess.run(["bash", str(script), "--stage=2"], capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip() == "2 x"
    bad = subprocess.run(["bash", str(script), "--internal", "y"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown option --internal" in bad.stderr
    undeclared = tmp_path / "undeclared.sh"
    undeclared.write_text(f"stage=1\n. {REPO}/tools/parse_options.sh\n")
    result = subprocess.run(["bash", str(undeclared)], capture_output=True, text=True)
    assert result.returncode == 2 and "declares no _options" in result.stderr


def test_every_run_sh_declares_its_options():
    """Every script that sources parse_options.sh declares _options, with a default for
    each name (--help lists them all)."""
    import glob

    scripts = [p for p in glob.glob(os.path.join(REPO, "egs", "*", "run.sh"))]
    assert len(scripts) >= 8
    for script in scripts:
        recipe = os.path.dirname(script)
        result = subprocess.run(["bash", "run.sh", "--help"], cwd=recipe, capture_output=True,
                                text=True, env=dict(os.environ, MOWE_PYTHON=sys.executable),
                                timeout=60)
        assert result.returncode == 0, (script, result.stderr)
        for option in ("--stage", "--stop_stage", "--train_args", "--decode_args",
                       "--decode_config"):
            assert option in result.stdout, (script, option)


TRAIN = os.path.join(REPO, "recipes", "train.py")
CONFIG = os.path.join(RECIPE, "conf", "train.yaml")


def train(tmp_path, *extra):
    return subprocess.run([sys.executable, TRAIN, CONFIG, f"--output_folder={tmp_path}/exp",
                           f"--data_folder={tmp_path}/data", *extra],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("override,message", [
    ("--batch_size=abc", "--batch_size=abc: batch_size must be a whole number"),
    ("--lr=fast", "--lr=fast: lr must be a number"),
    ("--number_of_epochs=2.5", "number_of_epochs must be a whole number"),
    ("--lora_rank=[1]", None),  # a key of the included spec, not of train.yaml: not ours
])
def test_override_types_are_checked_before_anything_runs(override, message):
    from mowe.recipe.hparams import check_override_types

    key, value = override[2:].split("=", 1)
    if message is None:
        check_override_types(CONFIG, f"{key}: {value}\n")
        return
    with pytest.raises(SystemExit, match=message.replace("[", r"\[")):
        check_override_types(CONFIG, f"{key}: {value}\n")


def test_train_refuses_an_ill_typed_override_in_one_line(tmp_path):
    result = train(tmp_path, f"--pretrained_dir={tmp_path}/pretrained", "--batch_size=abc")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --batch_size=abc: batch_size must be a whole number")
    assert "Traceback" not in result.stderr and not (tmp_path / "exp").exists()


def test_missing_pretrained_dir_says_so_and_how_to_create_it(tmp_path):
    result = train(tmp_path, f"--pretrained_dir={tmp_path}/nowhere")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Repo id must be" not in result.stderr
    assert f"folder {tmp_path}/nowhere/whisper-tiny.en is not a directory" in result.stderr
    assert f"python -m mowe provision --out {tmp_path}/nowhere" in result.stderr


def test_train_and_decode_args_reach_the_entry_points(tmp_path):
    """--train_args / --decode_args / --decode_config pass through to recipes/train.py and
    recipes/decode.py (a stand-in interpreter records their command lines)."""
    import shutil

    record = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f"#!/usr/bin/env bash\n"
                    f'case "$1" in -c|-m) exec {sys.executable} "$@" ;; esac\n'
                    f'printf "%s\\n" "$*" >> {record}\n')
    fake.chmod(0o755)
    tag = f"pytest_args_{os.getpid()}"
    try:
        result = subprocess.run(
            ["bash", "run.sh", "--stage", "3", "--stop_stage", "4", "--tag", tag,
             "--systems", "baseline", "--python", str(fake),
             "--train_args", "--lr=1e-4 --number_of_epochs=3 '--spec={lora_rank: 4}'",
             "--decode_args", "--beam_size=4 --repetition_penalty=1.1"],
            cwd=RECIPE, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        train, decode = record.read_text().splitlines()
    finally:
        shutil.rmtree(os.path.join(RECIPE, "exp", tag), ignore_errors=True)
    assert "recipes/train.py conf/train.yaml" in train
    assert train.endswith("--lr=1e-4 --number_of_epochs=3 --spec={lora_rank: 4}")
    assert "recipes/decode.py conf/train.yaml" in decode
    # decoding rebuilds the trained model: it gets the training overrides too
    assert "--lr=1e-4 --number_of_epochs=3 --spec={lora_rank: 4}" in decode
    assert decode.endswith("--decode_config=conf/decode.yaml --beam_size=4 "
                           "--repetition_penalty=1.1")


def test_every_listed_system_is_accepted_and_others_refused():
    """The systems check reads run.sh's own list (which spans two lines): each listed
    system passes it (the run then stops at the next check, an impossible stage range)."""
    text = open(os.path.join(RECIPE, "run.sh"), encoding="utf-8").read()
    listed = text.split('known_systems="')[1].split('"')[0].split()
    assert {"mowe_pretrained_pool", "mowe_moe_adapter", "baseline_ft"} <= set(listed)
    result = run("--tag", "pytest_refused", "--systems", " ".join(listed),
                 "--stage", "4", "--stop_stage", "2")
    assert result.returncode == 2 and "--stage 4 is after --stop_stage 2" in result.stderr, \
        result.stderr
    result = run("--tag", "pytest_refused", "--systems", "mowe no_such_system")
    assert result.returncode == 2
    assert "unknown system 'no_such_system'" in result.stderr
    # the two names either side of run.sh's line break
    assert "mowe_pretrained_pool baseline_whisper_base" in result.stderr, "the list on one line"
