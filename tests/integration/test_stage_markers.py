"""recipes/stages.sh: per-system stage markers (adding a system to a finished experiment
runs the per-system stages for it only) and sweep.sh's option checks. The job launchers
are replaced by a stub that records its command lines, so no model is loaded."""

import os
import shutil
import subprocess

from conftest import REPO

STUB = """#!/usr/bin/env bash
# a job launcher / python stand-in: record the command line, succeed; a training job
# also records when it starts and ends with its thread count ($TRAIN_SECONDS long), and
# fails for the system named in $FAIL_SYSTEM
echo "$*" >> "$CALLS"
case "$*" in *train.py*)
  line="$*"; system=${line##*--system=}; system=${system%% *}
  trap 'sleep 1; echo "term $system" >> "$CALLS.trace"; exit 143' TERM  # (1 s to save)
  echo "start $system threads=${OMP_NUM_THREADS:-unset}" >> "$CALLS.trace"
  seconds=${TRAIN_SECONDS:-0}
  [ "$system" != "${SLOW_SYSTEM:-}" ] || seconds=$(( seconds * 4 ))
  sleep "$seconds" & wait $!
  # the thread share the driver wrote for the jobs still running (mowe/train/threads.py)
  echo "end $system${MOWE_THREAD_SHARE_FILE:+ share=$(cat "$MOWE_THREAD_SHARE_FILE" 2>/dev/null)}" \
    >> "$CALLS.trace"
  [ "$system" != "${FAIL_SYSTEM:-}" ] || { echo "stub: $system fails" >&2; exit 1; } ;;
esac
echo "stub (trivial 0)"  # what the score stage greps for
"""

RUN_SH = """#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")"
stage=3 stop_stage=6 systems="a b" tag=t ngpu=0
system_jobs=auto decode_args=""
_options="stage stop_stage systems tag system_jobs decode_args"
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

    def run(*args, expect=0, **env_vars):
        env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"), **env_vars)
        env.pop("OMP_NUM_THREADS", None)
        (tmp_path / "calls.txt").write_text("")
        (tmp_path / "calls.txt.trace").write_text("")
        result = subprocess.run(["bash", str(run_sh), *args], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == expect, result.stdout + result.stderr
        if expect:
            return result.stderr, (tmp_path / "calls.txt").read_text().splitlines()
        return result.stdout, (tmp_path / "calls.txt").read_text().splitlines()

    return run


def trained(calls):
    return [c.split("--system=")[1].split()[0] for c in calls if "train.py" in c]


def test_adding_a_system_runs_the_per_system_stages_for_it_only(tmp_path):
    run = make_recipe(tmp_path)
    output, calls = run("--systems", "a b")
    assert sorted(trained(calls)) == ["a", "b"]  # (at once: in either order)
    output, calls = run("--systems", "a b")
    assert calls == [] and "stage 3 (train): already done, skipping" in output
    output, calls = run("--systems", "a b c")
    assert trained(calls) == ["c"], "a and b are finished: only the new system trains"
    decoded = [c for c in calls if "decode.py" in c]
    assert len(decoded) == 1 and "--system=c" in decoded[0]
    scored = [c for c in calls if "mowe score" in c]
    assert len(scored) == 1 and "/c/hyps.jsonl" in scored[0]
    report = [c for c in calls if "report.py" in c]
    assert len(report) == 1 and report[0].endswith("--systems a b c"), \
        "the report is redone over every system when the set changes"
    marker = tmp_path / "exp" / "t" / ".done" / "3.train"
    assert sorted(marker.read_text().split()) == ["a", "b", "c"]
    output, calls = run("--systems", "b")  # a subset: everything is done already
    assert trained(calls) == [] and any("report.py" in c for c in calls)


def test_a_marker_from_before_systems_were_recorded_counts_as_done(tmp_path):
    run = make_recipe(tmp_path)
    done = tmp_path / "exp" / "t" / ".done"
    done.mkdir(parents=True)
    (done / "3.train").write_text("")  # written by `touch` in earlier versions
    _, calls = run("--systems", "a b", "--stop_stage", "3")
    assert trained(calls) == []


def test_other_decoding_options_decode_score_and_report_again(tmp_path):
    run = make_recipe(tmp_path)
    run("--systems", "a b")
    output, calls = run("--systems", "a b")
    assert calls == []  # a rerun with the same options: nothing to do
    output, calls = run("--systems", "a b", "--decode_args", "--beam_size=4")
    assert "decoding options changed since the last decode" in output
    assert trained(calls) == []  # training is not redone
    decoded = [c for c in calls if "decode.py" in c]
    assert len(decoded) == 2 and all("--beam_size=4" in c for c in decoded)
    assert len([c for c in calls if "mowe score" in c]) == 2
    assert any("report.py" in c for c in calls)
    output, calls = run("--systems", "a b", "--decode_args", "--beam_size=4")
    assert calls == []  # the new options are recorded


def test_a_decode_from_before_options_were_recorded_is_not_redone(tmp_path):
    run = make_recipe(tmp_path)
    run("--systems", "a b")
    (tmp_path / "exp" / "t" / ".done" / "4.decode.options").unlink()
    output, calls = run("--systems", "a b")
    assert calls == [] and (tmp_path / "exp" / "t" / ".done" / "4.decode.options").exists()


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
            "--python", sys.executable, "--jobs", "2"]
    first = sweep(*args, timeout=1800)  # 4 trainings on 2 CPU cores, 2 at a time
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    if not os.environ.get("OMP_NUM_THREADS"):
        threads = max(1, len(os.sched_getaffinity(0)) // 2)
        assert f"sweep: 2 pairs at a time, {threads} CPU thread(s) each" in first.stdout
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
    assert "| mowe_dep |" in results and "95 % two-level bootstrap interval" in results
    assert "ASR against the base Whisper's own decoder" in results  # run.sh stage 5's
    assert os.path.isfile(os.path.join(exp, "routing_mowe_dep.png"))
    again = sweep(*args, timeout=300)
    assert again.returncode == 0
    for seed in ("1", "2"):
        log = open(os.path.join(exp, f"seed{seed}.mowe_dep.log")).read()
        assert "stage 3 (train): already done" in log and ": start" not in log
    shutil.rmtree(exp)  # passed: its 4 trainings' checkpoints need not fill the disk


def test_how_to_use_the_model_is_shown_only_once_one_is_trained(tmp_path):
    """The closing hint (mowe.inference.ask / serve / demo) names a model folder: not before a
    checkpoint exists (stage 2's features step leaves an empty save/ behind)."""
    run = make_recipe(tmp_path)
    (tmp_path / "exp" / "t" / "b" / "save").mkdir(parents=True)
    output, _ = run("--systems", "a b", "--stage", "3", "--stop_stage", "3")
    assert "ask the" not in output and "mowe.inference.ask" not in output
    (tmp_path / "exp" / "t" / "b" / "save" / "CKPT+2026-12-02+00-00-00+00").mkdir()
    output, _ = run("--systems", "a b", "--stage", "3", "--stop_stage", "3")
    assert "ask the b model about audio" in output and "-m mowe infer --model" in output


def trace(tmp_path):
    return (tmp_path / "calls.txt.trace").read_text().splitlines()


def test_systems_train_at_once_with_the_cores_shared_out(tmp_path):
    """--system_jobs auto on CPUs: one system per core, each with its share of the
    threads, and the job still running gets every core once the other has ended;
    --system_jobs 1: one after the other, the threads left to torch."""
    cores = len(os.sched_getaffinity(0))
    run = make_recipe(tmp_path)
    output, _ = run("--systems", "a b", "--stop_stage", "3", TRAIN_SECONDS="2",
                    SLOW_SYSTEM="b")
    events = trace(tmp_path)
    if cores >= 2:
        threads = cores // 2
        assert sorted(events[:2]) == [f"start a threads={threads}",
                                      f"start b threads={threads}"], events
        assert events[2:] == ["end a share=", f"end b share={cores}"], events
        assert f"2 systems at a time, {threads} CPU thread(s) each" in output
        assert f"b still running: {cores} CPU thread(s) each from now on" in output
        assert not list((tmp_path / "exp" / "t" / "log").glob(".thread_share*"))
    shutil.rmtree(tmp_path / "exp")
    run("--systems", "a b", "--stop_stage", "3", "--system_jobs", "1", TRAIN_SECONDS="0.2")
    assert trace(tmp_path) == ["start a threads=unset", "end a",
                               "start b threads=unset", "end b"]


def test_a_failed_system_fails_the_stage_and_keeps_the_finished_ones(tmp_path):
    run = make_recipe(tmp_path)
    error, calls = run("--systems", "a bad c", "--stop_stage", "4", "--system_jobs", "2",
                       expect=1, FAIL_SYSTEM="bad")
    assert "error: train failed for: bad (systems that finished are recorded" in error
    assert "stub: bad fails" in error
    assert sorted(trained(calls)) == ["a", "bad", "c"], "the other systems still train"
    assert not any("decode.py" in c for c in calls), "no stage after a failed one"
    marker = tmp_path / "exp" / "t" / ".done" / "3.train"
    assert sorted(marker.read_text().split()) == ["a", "c"]
    output, calls = run("--systems", "a bad c", "--stop_stage", "4")
    assert trained(calls) == ["bad"], "a rerun trains only the failed system"
    assert sorted(marker.read_text().split()) == ["a", "bad", "c"]
    assert len([c for c in calls if "decode.py" in c]) == 3


def test_sigterm_reaches_every_running_system(tmp_path):
    """A job scheduler's SIGTERM to run.sh reaches the training jobs (which checkpoint
    on it: the stub takes 1 s), and run.sh waits for them, then ends with 143."""
    import signal
    import time

    make_recipe(tmp_path)
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"), TRAIN_SECONDS="60")
    env.pop("OMP_NUM_THREADS", None)
    (tmp_path / "calls.txt.trace").write_text("")
    process = subprocess.Popen(["bash", str(tmp_path / "run.sh"), "--systems", "a b",
                                "--stop_stage", "3", "--system_jobs", "2"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(trace(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(trace(tmp_path)) == 2, trace(tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 143
    # both jobs had ended, their "checkpoint" written, before run.sh exited
    assert sorted(e for e in trace(tmp_path) if e.startswith("term")) == ["term a", "term b"]
    assert not (tmp_path / "exp" / "t" / ".done" / "3.train").exists()


def test_system_jobs_must_be_auto_or_a_positive_number(tmp_path):
    run = make_recipe(tmp_path)
    output, calls = run("--systems", "a b", "--stop_stage", "3", "--system_jobs", "08")
    assert sorted(trained(calls)) == ["a", "b"], "08 is eight, not a bad octal number"
    for value in ("0", "00", "two"):
        error, calls = run("--system_jobs", value, expect=2)
        assert f"--system_jobs takes auto or a whole number >= 1, not '{value}'" in error
        assert calls == []


def test_sweep_passes_training_and_decoding_options_to_every_pair(tmp_path):
    """sweep.sh --train_args / --decode_args reach each (system, seed) pair's run.sh,
    quotes kept (e.g. the study rerun in float32: --train_args "--train_llm_dtype=null")."""
    recipe = tmp_path / "egs" / "synthetic"
    recipe.mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "egs", "synthetic", "sweep.sh"), recipe / "sweep.sh")
    os.symlink(os.path.join(REPO, "tools"), tmp_path / "tools")
    calls = tmp_path / "calls.txt"
    (recipe / "run.sh").write_text(  # records its arguments, one per line, per call
        '#!/usr/bin/env bash\n{ printf "%s\\n" "$@"; echo ---; } >> "$CALLS"\n')
    (recipe / "run.sh").chmod(0o755)
    result = subprocess.run(
        ["bash", str(recipe / "sweep.sh"), "--seeds", "1 2", "--systems", "baseline mowe",
         "--stage", "3", "--stop_stage", "5",
         "--train_args", "--train_llm_dtype=null --spec={routers: [dep]}",
         "--decode_args", "--max_new_tokens=8"],
        env=dict(os.environ, CALLS=str(calls)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    pairs = [call.strip("\n").split("\n") for call in calls.read_text().split("---\n") if call]
    assert len(pairs) == 4
    for args in pairs:
        assert args[args.index("--train_args") + 1] == \
            "--train_llm_dtype=null --spec={routers: [dep]}"
        assert args[args.index("--decode_args") + 1] == "--max_new_tokens=8"
    # without them, run.sh gets neither option
    calls.write_text("")
    subprocess.run(["bash", str(recipe / "sweep.sh"), "--seeds", "1", "--systems", "baseline",
                    "--stage", "3", "--stop_stage", "5"],
                   env=dict(os.environ, CALLS=str(calls)), check=True, capture_output=True,
                   timeout=60)
    assert "--train_args" not in calls.read_text() and calls.read_text()
