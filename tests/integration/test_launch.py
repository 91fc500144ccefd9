"""The job launcher (mowe.recipe.launch): local job arrays with per-job logs and failures that
name their logs; the Slurm batch script's signal handling and requeueing, run for real
under bash with a stand-in ``scontrol`` that records what it is asked."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from mowe.recipe.launch import job_script, parse_slurm_conf, slurm_flags, DEFAULT_SLURM_CONF

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def launch(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mowe.recipe.launch", *args], capture_output=True,
                          text=True, cwd=cwd or REPO)


def test_local_job_array_writes_one_log_per_job(tmp_path):
    log = tmp_path / "log" / "job.JOB.log"
    result = launch("JOB=1:3", str(log), sys.executable, "-c",
                    "import sys; print('shard', sys.argv[1])", "JOB/3")
    assert result.returncode == 0, result.stderr
    for index in (1, 2, 3):
        text = (tmp_path / "log" / f"job.{index}.log").read_text()
        assert f"shard {index}/3" in text and "# exit code 0" in text


def test_a_failed_job_fails_the_launch_naming_its_log(tmp_path):
    log = tmp_path / "job.JOB.log"
    result = launch("JOB=1:2", str(log), sys.executable, "-c",
                    "import sys; sys.exit('boom in job ' + sys.argv[1]) "
                    "if sys.argv[1] == '2' else None", "JOB")
    assert result.returncode == 1
    assert "1 of 2 job(s) failed" in result.stderr
    assert str(tmp_path / "job.2.log") in result.stderr and "boom in job 2" in result.stderr
    assert str(tmp_path / "job.1.log") not in result.stderr.split("logs:")[-1]


def test_slurm_conf_maps_generic_options_to_sbatch_flags():
    flags = slurm_flags({"gpu": 2, "mem": "16G", "time": "1:00:00", "name": None},
                        DEFAULT_SLURM_CONF)
    assert flags[:2] == ["sbatch", "--export=ALL"]
    assert "--gres=gpu:2" in flags and ["--mem", "16G"] == flags[flags.index("--mem"):][:2]
    assert ["--time", "1:00:00"] == flags[flags.index("--time"):][:2]
    assert not any(f.startswith("--gres") for f in slurm_flags({"gpu": 0}, DEFAULT_SLURM_CONF))
    with pytest.raises(SystemExit, match="line 1 not understood"):
        parse_slurm_conf("gibberish here\n")


TRAINER = """
import signal, sys, time
def stop(number, frame):
    print("trainer: got", signal.Signals(number).name, "-> checkpoint, exit 75", flush=True)
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
print("trainer: running", flush=True)
time.sleep(60)
"""


def run_batch_script(tmp_path, send, restart_count=0, when="trainer: running"):
    """Run the batch script of a trainer under bash as Slurm would, send ``send`` as
    soon as a line starting with ``when`` is out."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    fake = bin_dir / "scontrol"
    fake.write_text(f"#!/bin/bash\necho \"$@\" >> {calls}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "job.sh"
    script.write_text(job_script([sys.executable, "-c", TRAINER], None))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
               SLURM_RESTART_COUNT=str(restart_count))
    process = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    line, new = "", ""
    while not new.startswith(when):  # the header (which echoes the trainer's source),
        new = process.stdout.readline()  # then the trainer's own line
        assert new, line
        line += new
    # no pause: the script's traps are set before the trainer starts
    process.send_signal(send)
    output = line + process.stdout.read()
    process.wait(timeout=30)
    requeued = calls.read_text() if calls.exists() else ""
    return process.returncode, output, requeued


def test_pre_timeout_signal_checkpoints_and_requeues(tmp_path):
    code, output, requeued = run_batch_script(tmp_path, signal.SIGUSR1)
    assert "got SIGTERM" in output  # USR1 reaches the command as TERM (torchrun-safe)
    assert code == 75 and "# exit code 75" in output
    assert requeued.strip() == "requeue 4242"


def test_a_signal_before_the_trainer_runs_is_not_lost(tmp_path):
    """Slurm's signal can come while the script is still starting the trainer."""
    code, output, requeued = run_batch_script(tmp_path, signal.SIGUSR1, when="# ")
    assert code in (75, 143) and f"# exit code {code}" in output   # 143: killed before
    assert requeued.strip() == "requeue 4242"                       # its handler was set


def test_scancel_terminates_without_requeue(tmp_path):
    code, output, requeued = run_batch_script(tmp_path, signal.SIGTERM)
    assert "got SIGTERM" in output and code == 75
    assert requeued == "" and "requeueing" not in output


def test_requeues_are_bounded(tmp_path):
    code, output, requeued = run_batch_script(tmp_path, signal.SIGUSR1, restart_count=20)
    assert code == 75 and requeued == "" and "giving up" in output


@pytest.mark.parametrize("submitter_threads, expected", [(None, "1"), ("2", "2")])
def test_a_job_uses_as_many_threads_as_cpus_it_was_given(tmp_path, submitter_threads,
                                                         expected):
    script = tmp_path / "job.sh"
    script.write_text(job_script([sys.executable, "-c", "import os, torch; print("
                                  "'threads', os.environ['OMP_NUM_THREADS'], "
                                  "torch.get_num_threads())"], None))
    env = dict(os.environ, SLURM_JOB_ID="1", SLURM_CPUS_PER_TASK="1")
    env.pop("OMP_NUM_THREADS", None)
    if submitter_threads:
        env["OMP_NUM_THREADS"] = submitter_threads
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    torch_threads = min(int(expected), len(os.sched_getaffinity(0)))  # torch's cap: cores
    assert f"threads {expected} {torch_threads}" in result.stdout


def test_local_launcher_passes_sigterm_on_and_waits_for_the_job(tmp_path):
    """A SIGTERM to `python -m mowe.recipe.launch` (the recipes' stage driver sends one when it
    is stopped) reaches the job, which checkpoints and exits 75; the launcher waits for
    it and its log ends with the job's exit code."""
    log = tmp_path / "job.log"
    process = subprocess.Popen([sys.executable, "-m", "mowe.recipe.launch", "--backend", "local",
                                str(log), sys.executable, "-c", TRAINER],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    # the trainer's own output line: the log's header echoes the trainer's source, which
    # holds the same words (waiting for those raced the trainer's start under load)
    while "trainer: running" not in (log.read_text().splitlines() if log.exists() else []):
        assert time.time() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 1  # a failed job fails the launch
    text = log.read_text()
    assert "got SIGTERM" in text and text.rstrip().endswith("# exit code 75"), text


def test_torchrun_jobs_keep_torchruns_own_thread_count():
    script = job_script([sys.executable, "-m", "torch.distributed.run", "train.py"], None)
    assert "SLURM_CPUS_PER_TASK" not in script
    assert "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in job_script(["python", "x.py"], None)
