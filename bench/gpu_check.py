#!/usr/bin/env python3
"""One device check: every GPU figure of the project from one command, under one folder.

GPU time comes rarely and in minutes, so this is the script to run first on a lent GPU
(``bench/gpu_check.sh OUT``). On a machine with CUDA it runs, each part under its own time
limit, in about eight minutes:

1. ``env``: the GPU, driver, torch / transformers / peft / speechbrain versions.
2. ``paper``: ``bench/paper_size_step.py --compile`` at paper size (eager, the LLM's
   layers compiled, the base encoder's too) with ``--profile``: ``paper_mfu`` and the
   rest of its figures, and the top CUDA kernels.
3. ``paper_cudagraphs``: the same step compiled with ``reduce-overhead`` (CUDA graphs,
   which take the host's launch time off the step): its figures prefixed ``cudagraphs_``.
4. ``recipe``: ``egs/synthetic/run.sh`` stages 2-4 with ``--ngpu 1`` (validate, features,
   train, decode on the GPU) on a corpus of noise clips shaped like the default size's,
   with random-weight models built from the bundled models' configs and tokenizers
   (``--config_dir``; the real weights exceed what a device call may carry), then
   ``mowe score`` per system. Its stage times count; its scores do not.
5. ``decode``: the recipe's trained MoWE system decoded again by ``recipes/decode.py`` on
   the GPU, batched (``decode_batch_size`` of the recipe) and one clip at a time, on the
   same test clips: ``batched_over_sequential_decode`` (decoding loops only) and
   ``decode_identical`` (share of clips with equal answers).

Output folder (``--out``):

- ``figures.json``: ``{"figures": {name: value}, "parts": {part: {"status", "seconds",
  "log"}}, "device", "commit", "started", "finished"}``, rewritten after every part, so
  a check cut off by its time limit leaves the figures of the parts that finished;
- ``summary.txt``: the one-line summary, also printed last (``gpu_check: name=value ...``);
- ``env.txt``; ``<part>.log`` per part (``score_<system>.log``, ``decode_<kind>.log``);
  ``paper_profile.txt`` (top kernels); ``recipe/`` (the recipe's logs, training logs,
  hypotheses and scores, no checkpoints) and ``decode/`` (the test subset and both
  hypothesis files). Models, corpus and feature cache go to ``--workdir`` (default: a
  temporary folder), so the folder stays small.

On a lent GPU machine (no network, at most ~64 MiB carried with the call): first, here,
``python bench/gpu_check.py --make_config_dir .gpu_configs`` (the bundled models' configs
and tokenizers, ~7 MB, no weights) and, if the machine's Python lacks the stack, a folder
of wheels for its Python (``pip download --no-deps --only-binary=:all: --python-version
3.12 -d .gpu_wheels ...``; the list that worked last time:
``bench/results/h200_2026-12-04/scripts/wheels.txt``); then one device call carrying both:
``MOWE_WHEELS=.gpu_wheels bash bench/gpu_check.sh $OUT --config_dir .gpu_configs``.

Without CUDA it stops at once with exit code 2, unless ``--tiny``: every part at toy
size on the CPU (tiny random models, a few clips, no compilation), which checks the
script itself (``tests/integration/test_gpu_check.py``); its numbers mean nothing.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECIPE = os.path.join(ROOT, "egs", "synthetic")
PARTS = ("env", "paper", "paper_cudagraphs", "recipe", "decode")
SUMMARY_FIGURES = ("paper_mfu", "cudagraphs_paper_mfu", "paper_step_s",
                   "cudagraphs_paper_step_s", "paper_peak_memory_gib", "paper_ops_per_step",
                   "paper_host_syncs_per_step", "recipe_features_s", "recipe_train_s",
                   "recipe_decode_s", "recipe_score_s", "batched_over_sequential_decode",
                   "decode_identical")
# Noise clips per task and split, shaped like egs/synthetic's sizes; answers of the
# tasks' usual lengths (a decode's time depends on them, not on the audio's content).
TASK_SHAPES = {
    "asr": ("Transcribe the speech.", "the quick brown fox jumps over the lazy dog today",
            (2.0, 6.0)),
    "er": ("What emotion does the speaker express?", "happy", (1.5, 4.0)),
    "aqa": ("How many beeps are there?", "three", (4.0, 6.0)),
    "sqa": ("Who went to the market after the rain?", "the old farmer", (6.0, 12.0)),
    "ac": ("Describe the sounds.", "a low hum and then a burst of noise and clicking",
           (4.0, 6.0)),
}


class Check:
    """The output folder: figures and part records, rewritten after every change."""

    def __init__(self, out, device):
        self.out = out
        self.record = {"figures": {}, "parts": {}, "device": device, "commit": git_commit(),
                       "started": now(), "finished": None}
        self.save()

    def add(self, figures, prefix=""):
        self.record["figures"].update({prefix + k: v for k, v in figures.items()})
        self.save()

    def part(self, name, status, seconds, log=None):
        self.record["parts"][name] = {"status": status, "seconds": round(seconds, 1),
                                      "log": log}
        self.save()

    def save(self):
        path = os.path.join(self.out, "figures.json")
        with open(path + ".partial", "w", encoding="utf-8") as handle:
            json.dump(self.record, handle, indent=2)
        os.replace(path + ".partial", path)

    def summary(self):
        figures = self.record["figures"]
        shown = [f"{name}={format_value(figures[name])}" for name in SUMMARY_FIGURES
                 if name in figures]
        parts = ",".join(f"{name}:{info['status']}" for name, info in
                         self.record["parts"].items())
        return f"gpu_check: {' '.join(shown)} parts={parts}"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_commit():
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def format_value(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def last_figures(text):
    """The ``name=value`` pairs of the last line of ``text`` that has them."""
    for line in reversed(text.splitlines()):
        pairs = re.findall(r"([A-Za-z_][\w]*)=([-+0-9.eE]+|nan|inf)(?=\s|$)", line)
        if pairs:
            return {name: float(value) for name, value in pairs}
    return {}


def run_logged(command, log_path, timeout, cwd=ROOT, env=None):
    """Run ``command`` with its output in ``log_path``; returns (status, text, seconds)."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# {now()} {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env=env, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            status = f"timed out after {timeout} s"
    with open(log_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    return status, text, time.monotonic() - start


# ------------------------------------------------------------------------------- parts
def part_env(check, args):
    lines = []
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                              "clocks.max.sm", "--format=csv"], capture_output=True, text=True)
        lines.append(smi.stdout.strip())
    code = ("import torch, transformers, peft, speechbrain\n"
            "print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers',"
            " transformers.__version__, 'peft', peft.__version__, 'speechbrain',"
            " speechbrain.__version__)\n"
            "print('device', torch.cuda.get_device_name() if torch.cuda.is_available()"
            " else 'cpu')\n")
    versions = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines += [versions.stdout.strip(), versions.stderr.strip()[-2000:], f"cpus {os.cpu_count()}",
              f"python {sys.version.split()[0]}", f"commit {check.record['commit']}"]
    with open(os.path.join(args.out, "env.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(line for line in lines if line) + "\n")
    return "ok" if versions.returncode == 0 else "failed"


def paper_command(args, cudagraphs):
    command = [sys.executable, os.path.join(HERE, "paper_size_step.py")]
    if args.tiny:
        return command + ["--scale", "tiny", "--device", "cpu", "--repeats", "1"]
    command += ["--scale", "paper", "--device", "cuda", "--compile"]
    if cudagraphs:
        return command + ["--compile_mode", "reduce-overhead"]
    return command + ["--profile", os.path.join(args.out, "paper_profile.txt")]


def part_paper(check, args, cudagraphs=False):
    name = "paper_cudagraphs" if cudagraphs else "paper"
    if cudagraphs and args.tiny:
        return "skipped (no compilation on the tiny path)"
    log = os.path.join(args.out, f"{name}.log")
    status, text, _ = run_logged(paper_command(args, cudagraphs), log,
                                 args.cudagraphs_timeout if cudagraphs else args.paper_timeout)
    figures = last_figures(text)
    check.add(figures, prefix="cudagraphs_" if cudagraphs else "")
    if status == "ok" and not figures:
        return "failed (no figures on its last line)"
    return status


def write_noise_corpus(folder, per_task, seed=0):
    """``folder/raw/{train,valid,test}.json`` and wavs: noise clips of each task's shape."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    raw = os.path.join(folder, "raw")
    for split, count in per_task.items():
        os.makedirs(os.path.join(folder, "wav", split), exist_ok=True)
        entries = {}
        for task, (instruction, answer, (low, high)) in TASK_SHAPES.items():
            clips = count[task] if isinstance(count, dict) else count
            for index in range(clips):
                duration = round(float(rng.uniform(low, high)), 2)
                wav = os.path.join(folder, "wav", split, f"{task}_{index:04d}.wav")
                soundfile.write(wav, (0.05 * rng.standard_normal(int(duration * 16000)))
                                .astype("float32"), 16000, subtype="PCM_16")
                entries[f"{split}_{task}_{index:04d}"] = {
                    "wav": wav, "duration": duration, "task": task,
                    "instruction": instruction, "answer": answer}
        os.makedirs(raw, exist_ok=True)
        with open(os.path.join(raw, f"{split}.json"), "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1)


def corpus_counts(tiny):
    """Clips per split and task: egs/synthetic's ``tiny`` or ``default`` size."""
    from mowe.synth.corpus import SIZES

    size = SIZES["tiny" if tiny else "default"]
    counts = {}
    for split, value in size.items():
        if isinstance(value, dict):
            counts[split] = {task: value.get(task, value.get("*")) for task in TASK_SHAPES}
        else:
            counts[split] = value
    return counts


def random_models(config_dir, out):
    """Random-weight copies of the models in ``config_dir`` (configs and tokenizers, no
    weights needed): same architectures and sizes, for timing."""
    import torch
    import transformers

    torch.manual_seed(0)
    for name in sorted(os.listdir(config_dir)):
        source = os.path.join(config_dir, name)
        if not os.path.isfile(os.path.join(source, "config.json")):
            continue
        config = transformers.AutoConfig.from_pretrained(source)
        model = getattr(transformers, config.architectures[0])._from_config(config)
        target = os.path.join(out, name)
        os.makedirs(target, exist_ok=True)
        model.save_pretrained(target)
        for entry in os.listdir(source):
            if entry != "config.json" and not entry.endswith((".safetensors", ".bin")) \
                    and os.path.isfile(os.path.join(source, entry)):
                shutil.copy(os.path.join(source, entry), target)


def recipe_env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", MOWE_PYTHON=sys.executable,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def part_recipe(check, args):
    # models, noise corpus and feature cache in the work folder; logs, hypotheses and
    # scores are copied to OUT/recipe at the end (OUT stays small enough to carry back)
    workdir = args.workdir
    pretrained = os.path.join(workdir, "pretrained")
    if args.tiny:
        from mowe.utils.tiny_models import make_tiny_pretrained_dir

        make_tiny_pretrained_dir(pretrained)
    else:
        if not args.config_dir or not os.path.isdir(args.config_dir):
            return (f"failed (--config_dir {args.config_dir!r} is not a folder: give the "
                    "bundled models' configs and tokenizers, e.g. a copy of pretrained/ "
                    "without the weights)")
        random_models(args.config_dir, pretrained)
    data = os.path.join(workdir, "data")
    write_noise_corpus(data, corpus_counts(args.tiny))
    command = ["bash", "run.sh", "--stage", "2", "--stop_stage", "4", "--tag", args.tag,
               "--size", "tiny" if args.tiny else "default", "--epochs", str(args.epochs),
               "--pretrained_dir", pretrained, "--data_dir", data,
               "--ngpu", "0" if args.tiny else "1", "--systems", "baseline mowe"]
    log = os.path.join(args.out, "recipe.log")
    status, text, _ = run_logged(command, log, args.recipe_timeout, cwd=RECIPE,
                                 env=recipe_env())
    for stage, seconds in re.findall(r"stage \d+ \((\w+)\): done in (\d+) s", text):
        check.add({f"recipe_{stage}_s": float(seconds)})
    exp = os.path.join(RECIPE, "exp", args.tag)
    if status == "ok":
        start = time.monotonic()
        for system in ("baseline", "mowe"):
            score_status, _, _ = run_logged(
                [sys.executable, "-m", "mowe", "score", "--hyp_file",
                 os.path.join(exp, system, "hyps.jsonl"), "--out_dir",
                 os.path.join(exp, system), "--no_java_meteor"],
                os.path.join(args.out, f"score_{system}.log"), 300, env=recipe_env())
            if score_status != "ok":
                status = f"score of {system} {score_status}"
        check.add({"recipe_score_s": round(time.monotonic() - start, 1)})
    keep = os.path.join(args.out, "recipe")
    if os.path.isdir(exp):
        shutil.copytree(exp, keep, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("save", "*.ckpt", "tensorboard"))
    return status


def decode_command(exp, system):
    """The command stage 4 ran for ``system`` (first line of its launch log)."""
    log = os.path.join(exp, "log", f"decode_{system}.log")
    with open(log, encoding="utf-8") as handle:
        first = handle.readline()
    if not first.startswith("# "):
        raise ValueError(f"{log} does not start with the command line")
    words = shlex.split(first[2:])
    return [sys.executable] + words[words.index(next(w for w in words
                                                     if w.endswith("decode.py"))):]


def part_decode(check, args):
    exp = os.path.join(RECIPE, "exp", args.tag)
    try:
        command = decode_command(exp, "mowe")
    except (OSError, ValueError, StopIteration) as error:
        return f"failed (no recipe decode to repeat: {error})"
    out = os.path.join(args.out, "decode")
    os.makedirs(out, exist_ok=True)
    manifest = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--data_folder="))
    with open(os.path.join(manifest if os.path.isabs(manifest) else
                           os.path.join(RECIPE, manifest), "test.json"), encoding="utf-8") as h:
        test = json.load(h)
    per_task = {}
    for clip_id, clip in sorted(test.items()):
        per_task.setdefault(clip["task"], []).append(clip_id)
    subset = {clip_id: test[clip_id] for ids in per_task.values()
              for clip_id in ids[:args.decode_clips_per_task]}
    subset_path = os.path.join(out, "test_subset.json")
    with open(subset_path, "w", encoding="utf-8") as handle:
        json.dump(subset, handle, indent=1)
    answers, loops = {}, {}
    for kind, extra in (("batched", []), ("one_by_one", ["--decode_batch_size=1"])):
        hyp_file = os.path.join(out, f"hyps_{kind}.jsonl")
        for stale in (hyp_file, hyp_file + ".ckpt"):
            if os.path.exists(stale):
                os.remove(stale)
        status, text, _ = run_logged(
            command + [f"--test_manifest={subset_path}", f"--hyp_file={hyp_file}", *extra],
            os.path.join(args.out, f"decode_{kind}.log"), args.decode_timeout, cwd=RECIPE,
            env=recipe_env())
        match = re.search(r"decoded (\d+) utterances in ([0-9.]+) s", text)
        if status != "ok" or not match:
            return f"{kind}: {status if status != 'ok' else 'no timing line in its log'}"
        loops[kind] = float(match.group(2))
        with open(hyp_file, encoding="utf-8") as handle:
            answers[kind] = {row["id"]: row["hyp"] for row in map(json.loads, handle)}
    same = sum(answers["batched"].get(key) == hyp for key, hyp in answers["one_by_one"].items())
    check.add({"batched_over_sequential_decode": loops["batched"] / loops["one_by_one"],
               "decode_batched_s": loops["batched"], "decode_one_by_one_s": loops["one_by_one"],
               "decode_identical": same / max(len(answers["one_by_one"]), 1),
               "decode_clips": float(len(answers["one_by_one"]))})
    return "ok"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder (created; a previous check's files in "
                        "it are replaced)")
    parser.add_argument("--tiny", action="store_true", help="every part at toy size on the "
                        "CPU: checks the script, its numbers mean nothing")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: "
                        + ",".join(PARTS[1:]))
    parser.add_argument("--config_dir", default=os.path.join(ROOT, "pretrained"),
                        help="the bundled models' configs and tokenizers (weights not "
                             "needed), one folder per model (default: pretrained/)")
    parser.add_argument("--make_config_dir", metavar="DIR", help="only copy the configs and "
                        "tokenizers of --config_dir's models (no weights) to DIR, to carry "
                        "to a GPU machine, and exit")
    parser.add_argument("--epochs", type=int, default=1, help="recipe training epochs")
    parser.add_argument("--workdir", help="where the random models, the noise corpus and "
                        "its feature cache go (default: a temporary folder, removed at the "
                        "end)")
    parser.add_argument("--tag", default="gpu_check", help="the recipe's experiment tag "
                        "(egs/synthetic/exp/TAG is replaced)")
    parser.add_argument("--decode_clips_per_task", type=int, default=8)
    parser.add_argument("--paper_timeout", type=int, default=150)
    parser.add_argument("--cudagraphs_timeout", type=int, default=100)
    parser.add_argument("--recipe_timeout", type=int, default=200)
    parser.add_argument("--decode_timeout", type=int, default=50)
    return parser.parse_args(argv)


def make_config_dir(source, target):
    """Copy every model folder's files but its weights from ``source`` to ``target``."""
    copied = 0
    for name in sorted(os.listdir(source)):
        folder = os.path.join(source, name)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            continue
        os.makedirs(os.path.join(target, name), exist_ok=True)
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            if os.path.isfile(path) and not entry.endswith((".safetensors", ".bin", ".gguf")):
                shutil.copy(path, os.path.join(target, name, entry))
                copied += 1
    return copied


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.make_config_dir:
        if not os.path.isdir(args.config_dir):
            print(f"gpu_check: {args.config_dir} is not a folder (provision the models: "
                  "python -m mowe provision --out pretrained)", file=sys.stderr)
            return 2
        count = make_config_dir(args.config_dir, args.make_config_dir)
        print(f"gpu_check: copied {count} files (configs, tokenizers) to {args.make_config_dir}")
        return 0 if count else 2
    if not args.out:
        print("gpu_check: --out is required", file=sys.stderr)
        return 2
    skip = {part for part in args.skip.split(",") if part}
    unknown = skip - set(PARTS)
    if unknown:
        print(f"gpu_check: unknown parts in --skip: {', '.join(sorted(unknown))} "
              f"(known: {', '.join(PARTS[1:])})", file=sys.stderr)
        return 2
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): this "
              "check needs a GPU; --tiny runs its toy-size path on the CPU", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)
    temporary = args.workdir is None
    if temporary:
        import tempfile

        args.workdir = tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(args.workdir, exist_ok=True)
    shutil.rmtree(os.path.join(RECIPE, "exp", args.tag), ignore_errors=True)
    check = Check(args.out, "cpu (tiny)" if args.tiny else torch.cuda.get_device_name())

    def finish(*_):
        if temporary:
            shutil.rmtree(args.workdir, ignore_errors=True)
        check.record["finished"] = now()
        check.save()
        line = check.summary()
        with open(os.path.join(args.out, "summary.txt"), "w", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print(line, flush=True)

    def stopped(signum, _frame):
        finish()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    runners = {"env": part_env, "paper": part_paper,
               "paper_cudagraphs": lambda c, a: part_paper(c, a, cudagraphs=True),
               "recipe": part_recipe, "decode": part_decode}
    failed = False
    for name in PARTS:
        if name in skip:
            check.part(name, "skipped", 0.0)
            continue
        print(f"gpu_check: {name} ...", flush=True)
        start = time.monotonic()
        try:
            status = runners[name](check, args)
        except Exception as error:  # a part's failure must not lose the others' figures
            status = f"failed ({type(error).__name__}: {error})"
        check.part(name, status, time.monotonic() - start,
                   log=f"{name}.log" if os.path.exists(os.path.join(args.out, f"{name}.log"))
                   else None)
        print(f"gpu_check: {name}: {status} ({time.monotonic() - start:.0f} s)", flush=True)
        failed |= not (status == "ok" or status.startswith("skipped"))
    finish()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
