"""Where a result comes from: the provenance section of a recipe's RESULTS.md.

The git commit of the toolkit (and whether the checkout had uncommitted changes), the
exact ``run.sh`` commands that made the experiment (``exp/TAG/log/commands.txt``, written
by recipes/stages.sh), the machine (CPU model, GPUs), the wall time of each stage
(``exp/TAG/log/stage_times.tsv``) and the versions of the libraries that decide the
numbers — as ESPnet's ``show_asr_result.sh`` and icefall's RESULTS files record them.

Example
-------
>>> rows = stage_times_from_lines(["3\\ttrain\\t7200\\t2026-01-01T00:00:00Z",
...                                "4\\tdecode\\t65\\t2026-01-01T02:00:00Z",
...                                "4\\tdecode\\t61\\t2026-01-02T00:00:00Z"])
>>> rows
[('3', 'train', 7200), ('4', 'decode', 61)]
>>> format_seconds(7200), format_seconds(61), format_seconds(5)
('2 h 00 min', '1 min 01 s', '5 s')
"""

import os
import platform
import subprocess

PACKAGES = ("torch", "transformers", "speechbrain", "peft", "torchaudio", "hyperpyyaml")


def git_state(folder):
    """``(commit, dirty)`` of the git checkout holding ``folder``, or ``(None, None)``."""
    def git(*args):
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``; else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus():
    """Names of the visible CUDA devices (empty without any)."""
    try:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no CUDA runtime
        return []


def versions(packages=PACKAGES):
    """``{package: version or "not installed"}``.

    >>> versions(["no-such-package-mowe"])
    {'no-such-package-mowe': 'not installed'}
    """
    from importlib import metadata

    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def stage_times_from_lines(lines):
    """``[(number, name, seconds)]``: the latest run of each stage, in stage order."""
    latest = {}
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if len(fields) >= 3 and fields[2].isdigit():
            latest[fields[0]] = (fields[0], fields[1], int(fields[2]))
    return [latest[k] for k in sorted(latest, key=lambda n: int(n) if n.isdigit() else 99)]


def format_seconds(seconds):
    """A wall time for people."""
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def _read_lines(path):
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def provenance_lines(exp_dir, repo=None):
    """Markdown lines of the provenance section for ``exp_dir``."""
    repo = repo or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    commit, dirty = git_state(repo)
    lines = ["## Provenance", ""]
    if commit:
        lines.append(f"- toolkit commit: `{commit}`" + (" (with uncommitted changes)"
                                                        if dirty else " (clean checkout)"))
    else:
        lines.append("- toolkit commit: unknown (not a git checkout)")
    commands = _read_lines(os.path.join(exp_dir, "log", "commands.txt"))
    if commands:
        lines.append("- commands (UTC time, [recipe folder], the command as typed there):")
        lines += [f"  - `{line}`" for line in commands[-10:]]
    devices = gpus()
    lines.append(f"- machine: {cpu_model()}, {os.cpu_count()} CPU cores; GPU: "
                 f"{', '.join(devices) if devices else 'none'}; {platform.platform()}, "
                 f"Python {platform.python_version()}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    times = stage_times_from_lines(_read_lines(os.path.join(exp_dir, "log",
                                                            "stage_times.tsv")))
    if times:
        lines += ["", "| stage | wall time |", "|---|---|"]
        lines += [f"| {number} {name} | {format_seconds(seconds)} |"
                  for number, name, seconds in times]
    return lines
