"""recipes/stages.sh: per-system stage markers (adding a system to a finished experiment
runs the per-system stages for it only) and sweep.sh's option checks. The job launchers
are replaced by a stub that records its command lines, so no model is loaded."""

import os
import subprocess

from conftest import REPO

STUB = """#!/usr/bin/env bash
# a job launcher / python stand-in: record the command line, succeed
echo "$*" >> "$CALLS"
echo "stub (trivial 0)"  # what the score stage greps for
"""

RUN_SH = """#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")"
stage=3 stop_stage=6 systems="a b" tag=t ngpu=0
_options="stage stop_stage systems tag"
. {repo}/tools/parse_options.sh
mkdir -p "exp/$tag/log"  # (the real launcher makes it)
python={stub} train_config=conf.yaml data_dir=data pretrained_dir=""
prep_cmd={stub} train_cmd={stub} decode_cmd={stub}
provision_command=()
system_overrides() {{ system_args=(--system="$1"); }}
. {repo}/recipes/stages.sh
"""


def make_recipe(tmp_path):
    stub = tmp_path / "stub.sh"
    stub.write_text(STUB)
    stub.chmod(0o755)
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(RUN_SH.format(repo=REPO, stub=stub))

    def run(*args):
        env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"))
        (tmp_path / "calls.txt").write_text("")
        result = subprocess.run(["bash", str(run_sh), *args], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout, (tmp_path / "calls.txt").read_text().splitlines()

    return run


def trained(calls):
    return [c.split("--system=")[1].split()[0] for c in calls if "train.py" in c]


def test_adding_a_system_runs_the_per_system_stages_for_it_only(tmp_path):
    run = make_recipe(tmp_path)
    output, calls = run("--systems", "a b")
    assert trained(calls) == ["a", "b"]
    output, calls = run("--systems", "a b")
    assert calls == [] and "stage 3 (train): already done, skipping" in output
    output, calls = run("--systems", "a b c")
    assert trained(calls) == ["c"], "a and b are finished: only the new system trains"
    decoded = [c for c in calls if "decode.py" in c]
    assert len(decoded) == 1 and "--system=c" in decoded[0]
    scored = [c for c in calls if "mowe.scoring score" in c]
    assert len(scored) == 1 and "/c/hyps.jsonl" in scored[0]
    report = [c for c in calls if "report.py" in c]
    assert len(report) == 1 and report[0].endswith("--systems a b c"), \
        "the report is redone over every system when the set changes"
    marker = tmp_path / "exp" / "t" / ".done" / "3.train"
    assert marker.read_text().split() == ["a", "b", "c"]
    output, calls = run("--systems", "b")  # a subset: everything is done already
    assert trained(calls) == [] and any("report.py" in c for c in calls)


def test_a_marker_from_before_systems_were_recorded_counts_as_done(tmp_path):
    run = make_recipe(tmp_path)
    done = tmp_path / "exp" / "t" / ".done"
    done.mkdir(parents=True)
    (done / "3.train").write_text("")  # written by `touch` in earlier versions
    _, calls = run("--systems", "a b", "--stop_stage", "3")
    assert trained(calls) == []


def sweep(*args, timeout=60):
    return subprocess.run(["bash", os.path.join(REPO, "egs", "synthetic", "sweep.sh"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_sweep_refuses_bad_options_before_anything_runs():
    result = sweep("--seeds", "1 x")
    assert result.returncode == 2 and "--seeds takes whole numbers, not 'x'" in result.stderr
    result = sweep("--systems", "mowe", "--reference", "baseline")
    assert result.returncode == 2 and "reference system 'baseline' is not in" in result.stderr
    result = sweep("--help")
    assert result.returncode == 0 and "--seeds" in result.stdout and "--jobs" in result.stdout


def test_sweep_trains_every_pair_once_and_reports_with_uncertainty(tiny_run):
    """Two seeds x two systems on the tiny corpus the tiny_run fixture prepared: each pair
    trains in its own folder, a rerun skips them all, and RESULTS.md has the study."""
    import shutil
    import sys

    from conftest import RECIPE

    tag = "pytest_sweep"
    shutil.rmtree(os.path.join(RECIPE, "exp", tag), ignore_errors=True)
    args = ["--stage", "3", "--size", "tiny", "--seed", "1234", "--seeds", "1 2",
            "--systems", "baseline mowe_dep", "--epochs", "1", "--tag", tag,
            "--python", sys.executable]
    first = sweep(*args, timeout=1800)  # 4 trainings on 2 CPU cores
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    exp = os.path.join(RECIPE, "exp", tag)
    for seed in ("1", "2"):
        for system in ("baseline", "mowe_dep"):
            log = open(os.path.join(exp, f"seed{seed}.{system}.log")).read()
            assert "stage 3 (train): done" in log
            assert os.path.isfile(os.path.join(exp, f"seed{seed}", system, "items.jsonl"))
        with open(os.path.join(exp, f"seed{seed}", "mowe_dep", "hyperparams.yaml")) as handle:
            assert f"seed: {seed}\n" in handle.read(), "the training seed is the sweep's"
    results = open(os.path.join(exp, "RESULTS.md")).read()
    assert "Mean ± standard deviation over 2 seed(s)" in results
    assert "| mowe_dep |" in results and "95 % paired" in results
    assert "ASR against the base Whisper's own decoder" in results  # run.sh stage 5's
    assert os.path.isfile(os.path.join(exp, "routing_mowe_dep.png"))
    again = sweep(*args, timeout=300)
    assert again.returncode == 0
    for seed in ("1", "2"):
        log = open(os.path.join(exp, f"seed{seed}.mowe_dep.log")).read()
        assert "stage 3 (train): already done" in log and ": start" not in log
    shutil.rmtree(exp)  # passed: its 4 trainings' checkpoints need not fill the disk


def test_how_to_use_the_model_is_shown_only_once_one_is_trained(tmp_path):
    """The closing hint (mowe.infer / serve / demo) names a model folder: not before a
    checkpoint exists (stage 2's features step leaves an empty save/ behind)."""
    run = make_recipe(tmp_path)
    (tmp_path / "exp" / "t" / "b" / "save").mkdir(parents=True)
    output, _ = run("--systems", "a b", "--stage", "3", "--stop_stage", "3")
    assert "ask the" not in output and "mowe.infer" not in output
    (tmp_path / "exp" / "t" / "b" / "save" / "CKPT+2026-12-02+00-00-00+00").mkdir()
    output, _ = run("--systems", "a b", "--stage", "3", "--stop_stage", "3")
    assert "ask the b model about audio" in output and "-m mowe.infer --model" in output
