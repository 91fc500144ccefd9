"""One job launcher for every recipe stage: local processes or Slurm (``sbatch``).

``python -m mowe launch [--backend local|slurm] [--config conf/slurm.conf]
[--gpu N] [--mem 16G] [--num_threads N] [--time 4:00:00] [--num_nodes K]
[--max_jobs_run M] [JOB=1:N] LOG command...``

As in Kaldi/ESPnet, ``JOB=1:N`` makes a job array: the word ``JOB`` in ``LOG`` and in
the command becomes the job's index (``--shard JOB/4``, ``decode.JOB.log``). Every job
writes its own log (a header with the command, then its output). A failed job fails
the launch, naming each failed job's log and showing its last lines.

Slurm: the generic options are mapped to ``sbatch`` flags by a config file in ESPnet's
``slurm.conf`` format (``command``, ``default name=value``, ``option name=* flags $0``,
``option name=value flags``). Jobs are submitted with ``--wait`` (the stage blocks until
they end), ``--requeue`` and a pre-timeout signal (``--signal=B:USR1@SECONDS``): the job
script forwards it to the command, which checkpoints and exits with 75, and the script
then requeues the job so that it resumes where it stopped.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

EXIT_PREEMPTED = 75
MAX_REQUEUES = 20
GENERIC_OPTIONS = ("gpu", "mem", "num_threads", "time", "num_nodes", "partition", "name")
DEFAULT_SLURM_CONF = """\
# generic option -> sbatch flags (ESPnet format); $0 is the option's value
command sbatch --export=ALL
option name=* --job-name $0
default time=24:00:00
option time=* --time $0
option mem=* --mem $0
option mem=0
default num_threads=1
option num_threads=* --cpus-per-task $0
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
option partition=* --partition $0
"""


def parse_array(spec):
    """``JOB=1:4`` -> ``("JOB", 1, 4)``; None when ``spec`` is not an array spec."""
    match = re.fullmatch(r"([A-Za-z_]+)=(\d+):(\d+)", spec)
    if not match:
        return None
    name, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    if last < first:
        raise SystemExit(f"launch: empty job array {spec}")
    return name, first, last


def substitute(words, name, index):
    """Replace the array variable (as a whole word part) by ``index``."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    return [pattern.sub(str(index), word) for word in words]


def parse_slurm_conf(text):
    """ESPnet ``slurm.conf`` -> (base command list, defaults, rules).

    ``rules[name]`` maps a value (or ``*``) to a list of flag templates.
    """
    command, defaults, rules = ["sbatch"], {}, {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind == "command":
            command = shlex.split(rest)
        elif kind == "default":
            name, _, value = rest.strip().partition("=")
            defaults[name] = value
        elif kind == "option":
            head, _, flags = rest.strip().partition(" ")
            name, _, value = head.partition("=")
            rules.setdefault(name, {})[value] = shlex.split(flags)
        else:
            raise SystemExit(f"launch: slurm config line {number} not understood: {raw!r}")
    return command, defaults, rules


def slurm_flags(options, conf_text):
    """sbatch command + flags for the generic ``options`` (name -> value or None)."""
    command, defaults, rules = parse_slurm_conf(conf_text)
    values = dict(defaults)
    values.update({k: str(v) for k, v in options.items() if v is not None})
    flags = list(command)
    for name, value in values.items():
        table = rules.get(name, {})
        if value in table:
            flags += table[value]
        elif "*" in table:
            flags += [f.replace("$0", value) for f in table["*"]]
        elif table:
            raise SystemExit(f"launch: slurm config has no rule for {name}={value}")
    return flags


def write_header(log, words):
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(words)}\n")


# The local jobs running now: SIGTERM/SIGINT to the launcher are passed on to them
# (a trainer checkpoints on SIGTERM), and the launcher waits for them to end.
_RUNNING = set()


def _pass_signal_on(signum, frame):
    for process in list(_RUNNING):
        try:
            process.send_signal(signum)
        except OSError:  # already ended
            pass


def run_local(log, words):
    """Run one job here, output appended to its log; returns its exit code."""
    write_header(log, words)
    with open(log, "a", encoding="utf-8") as handle:
        process = subprocess.Popen(words, stdout=handle, stderr=subprocess.STDOUT)
        _RUNNING.add(process)
        try:
            code = process.wait()
        finally:
            _RUNNING.discard(process)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"# exit code {code}\n")
    return code


def job_script(words, array, max_requeues=MAX_REQUEUES):
    """The batch script run by ``sbatch``.

    Signals: Slurm's pre-timeout ``USR1`` (``--signal=B:USR1@S``) is forwarded to the
    command as ``TERM`` — which a trainer turns into checkpoint-and-exit and which
    ``torchrun`` forwards to its workers (it would die on ``USR1``) — and the job is
    then requeued, at most ``max_requeues`` times, to resume from that checkpoint. A
    ``TERM`` from ``scancel`` is forwarded the same way but the job is not requeued.
    A command exiting with :data:`EXIT_PREEMPTED` by itself is requeued too.
    """
    name = array[0] if array else "JOB"
    marker = f"__{name}__"

    def shell_word(word):  # quoted pieces, the array index expanded between them
        return f'"${{{name}}}"'.join(shlex.quote(piece) if piece else ""
                                      for piece in word.split(marker)) or "''"

    command = " ".join(shell_word(w) for w in words)
    # As many CPU threads as CPUs the job was given (torch would start one per core of
    # the node otherwise, crowding the other jobs there), unless the submitter set a
    # number; not for torchrun, which gives each of its processes one thread itself.
    threads = ""
    if not any("torchrun" in w or "torch.distributed.run" in w for w in words):
        threads = ('[ -n "${OMP_NUM_THREADS:-}" ] || [ -z "${SLURM_CPUS_PER_TASK:-}" ] || '
                   "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK "
                   "MKL_NUM_THREADS=$SLURM_CPUS_PER_TASK\n")
    # The traps come first: a signal before the trainer starts is remembered and passed
    # on once it has (bash would otherwise die of USR1 and lose the requeue).
    return f"""#!/bin/bash
child="" preempted=0 cancelled=0
trap 'preempted=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' USR1
trap 'cancelled=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM
export {name}=${{SLURM_ARRAY_TASK_ID:-1}}
{threads}printf '# %s job %s on %s (restart %s): %s\\n' "$(date -Is)" "$SLURM_JOB_ID" "$(hostname)" \\
  "${{SLURM_RESTART_COUNT:-0}}" {shlex.quote(shlex.join(words).replace(marker, name))}
{command} &
child=$!
# a signal that came before $child was known is passed on now
[ "$preempted$cancelled" = 00 ] || kill -TERM "$child" 2>/dev/null
# a trapped signal ends `wait` early (status 128 + signal): wait while the trainer lives,
# then take its own status (bash keeps it for a finished child)
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"; code=$?
echo "# exit code $code"
if [ "$cancelled" = 0 ] && [ "$code" -ne 0 ] && \\
   {{ [ "$preempted" = 1 ] || [ "$code" -eq {EXIT_PREEMPTED} ]; }}; then
  if [ "${{SLURM_RESTART_COUNT:-0}}" -ge {max_requeues} ]; then
    echo "# preempted, but already requeued {max_requeues} times: giving up"
  else
    echo "# preempted: requeueing to resume from the checkpoint"
    scontrol requeue "${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}${{SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}}"
  fi
fi
exit "$code"
"""


def run_slurm(log, words, array, options, conf_text, signal_seconds, max_jobs_run=None):
    """Submit (an array of) jobs with ``sbatch --wait``; returns the failed indices."""
    name = array[0] if array else "JOB"
    marked = [re.sub(rf"\b{name}\b", f"__{name}__", w) for w in words] if array else words
    folder = os.path.join(os.path.dirname(os.path.abspath(log)), "q")
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(log).replace(name, "array") if array else os.path.basename(log)
    script = os.path.join(folder, base + ".sh")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(job_script(marked, array))
    output = re.sub(rf"\b{name}\b", "%a", os.path.abspath(log)) if array \
        else os.path.abspath(log)
    flags = slurm_flags(options, conf_text) + [
        "--parsable", "--wait", "--requeue", f"--signal=B:USR1@{signal_seconds}", "--open-mode=append",
        "--output", output, "--chdir", os.getcwd()]
    if array:
        limit = f"%{max_jobs_run}" if max_jobs_run else ""
        flags += [f"--array={array[1]}-{array[2]}{limit}"]
    indices = range(array[1], array[2] + 1) if array else [None]
    for index in indices:  # fresh logs for this submission
        path = re.sub(rf"\b{name}\b", str(index), log) if array else log
        write_header(path, words if index is None else substitute(words, name, index))
    result = subprocess.run(flags + [script], capture_output=True, text=True)
    if result.returncode == 0:
        return []
    if not result.stdout.strip():  # no job id: the submission itself failed
        raise SystemExit(f"launch: sbatch failed: {result.stderr.strip()}")
    failed = []
    for index in indices:
        path = re.sub(rf"\b{name}\b", str(index), log) if array else log
        text = open(path, encoding="utf-8", errors="replace").read()
        codes = re.findall(r"# exit code (\d+)", text)
        if not codes or codes[-1] != "0":
            failed.append(index)
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "slurm"], default="local")
    parser.add_argument("--config", help="slurm.conf (default: a built-in mapping)")
    for name in GENERIC_OPTIONS:
        parser.add_argument(f"--{name}", default=None, help=f"generic option {name}")
    parser.add_argument("--max_jobs_run", type=int, default=None,
                        help="array jobs at once (local default: all cores; slurm: "
                             "--array=a-b%%M)")
    parser.add_argument("--print_slurm_conf", action="store_true",
                        help="print the built-in slurm.conf (a start for conf/slurm.conf)")
    parser.add_argument("--signal_seconds", type=int, default=120,
                        help="slurm: send USR1 this long before the time limit")
    parser.add_argument("rest", nargs=argparse.REMAINDER,
                        help="[JOB=1:N] LOG command [args...]")
    args = parser.parse_args(argv)
    if args.print_slurm_conf:
        print(DEFAULT_SLURM_CONF, end="")
        return 0
    rest = list(args.rest)
    array = parse_array(rest[0]) if rest else None
    if array:
        rest = rest[1:]
    if len(rest) < 2:
        parser.error("expected LOG and a command")
    log, words = rest[0], rest[1:]
    indices = list(range(array[1], array[2] + 1)) if array else [None]

    def log_of(index):
        return log if index is None else substitute([log], array[0], index)[0]

    if args.backend == "local":
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _pass_signal_on)

        def run(index):
            command = words if index is None else substitute(words, array[0], index)
            return index, run_local(log_of(index), command)

        workers = args.max_jobs_run or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            failed = [i for i, code in pool.map(run, indices) if code != 0]
    else:
        conf_text = DEFAULT_SLURM_CONF
        if args.config:
            if not os.path.isfile(args.config):
                raise SystemExit(f"launch: slurm config {args.config} not found")
            conf_text = open(args.config, encoding="utf-8").read()
        options = {name: getattr(args, name) for name in GENERIC_OPTIONS}
        failed = run_slurm(log, words, array, options, conf_text, args.signal_seconds,
                           args.max_jobs_run)
    if failed:
        for index in failed:
            path = log_of(index)
            print(f"launch: job failed; last lines of {path}:", file=sys.stderr)
            try:
                lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
                print("\n".join(lines[-25:]), file=sys.stderr)
            except OSError:
                print("  (log missing)", file=sys.stderr)
        print(f"launch: {len(failed)} of {len(indices)} job(s) failed; logs: "
              + ", ".join(log_of(i) for i in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
