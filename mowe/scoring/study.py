"""A multi-seed comparison of systems: mean ± std over seeds and paired bootstrap intervals.

A study is several runs of the same systems on the same test set that differ only in
the training seed: ``RUN/<system>/items.jsonl`` (per-clip metrics written by
``python -m mowe score``) and ``RUN/<system>/hyps.jsonl`` (routing selections)
for each run folder ``RUN``. For every task's primary metric this module gives

* per system, the mean and sample standard deviation over seeds of the corpus metric;
* per system against a reference system, the difference of the corpus metric with a 95 %
  two-level bootstrap interval (:func:`bootstrap_difference`): a resample draws each
  system's training seeds with replacement, then test clips with replacement (the same
  clips for both systems), so the interval reflects training-seed variation and
  test-set sampling together;
* per MoWE system, the share of each task's clips each weak encoder got from the
  data-dependent router (the paper's Fig. 2).

Corpus WER is recomputed from the resampled clips' edit counts (sum of errors over sum
of reference words), not averaged per clip.

The bootstrap is written with numpy rather than taken from a library because the
statistic is a ratio of sums over paired units (WER) and scipy's ``bootstrap`` pairs
samples but resamples each statistic's inputs as separate arrays of equal weight.
"""

import json
import math
import os
from collections import defaultdict

import numpy as np

from mowe.scoring.report import format_value, metric_label
from mowe.scoring.routing_shares import routing_shares
from mowe.scoring.task_metrics import LOWER_IS_BETTER

# Per task: the primary metric and the per-clip fields that make it (numerator,
# denominator: the corpus metric is sum(numerator) / sum(denominator), 1 per clip when
# the denominator is None).
PRIMARY = {
    "asr": ("wer", "word_errors", "reference_words"),
    "er": ("accuracy", "correct", None),
    "aqa": ("accuracy", "correct", None),
    "sqa": ("f1", "f1", None),
    "ac": ("meteor_nltk", "meteor_nltk", None),
}


class StudyError(ValueError):
    """A study whose runs cannot be compared; the message says what is missing."""


def read_items(system_dir):
    """``{(task, clip id): item}`` from ``system_dir/items.jsonl``."""
    path = os.path.join(system_dir, "items.jsonl")
    if not os.path.isfile(path):
        raise StudyError(f"{path} missing: score the system first "
                         f"(python -m mowe score --hyp_file ... --out_dir {system_dir})")
    items = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                item = json.loads(line)
                items[(item["task"], item["id"])] = item
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise StudyError(f"{path}:{number}: not an item line ({error})") from error
    return items


def clip_values(items, task):
    """Sorted clip ids and the (numerator, denominator) arrays of ``task``'s metric."""
    metric, numerator, denominator = PRIMARY[task]
    ids = sorted(clip for (t, clip) in items if t == task)
    missing = [clip for clip in ids if numerator not in items[(task, clip)]
               or (denominator and denominator not in items[(task, clip)])]
    if missing:
        raise StudyError(f"task {task}: items lack {numerator!r} for {len(missing)} clip(s) "
                         f"(e.g. {missing[0]}): re-score with this version of mowe.scoring")
    num = np.array([float(items[(task, c)][numerator]) for c in ids])
    den = np.array([float(items[(task, c)][denominator]) if denominator else 1.0 for c in ids])
    return ids, num, den


def corpus_metric(num, den):
    return float(num.sum() / max(den.sum(), 1e-12))


def load_study(runs, systems, allow_missing=False):
    """``({system: {task: {run: (ids, num, den)}}}, {system: [runs without scores]})``.

    Every scored (run, system) pair must cover the same test clips per task as every other
    pair. A pair with no ``items.jsonl`` is an error unless ``allow_missing`` (a sweep still
    running, or some systems run at fewer seeds): then it is left out and listed.
    """
    data = defaultdict(lambda: defaultdict(dict))
    missing = defaultdict(list)
    for run in runs:
        for system in systems:
            folder = os.path.join(run, system)
            if allow_missing and not os.path.isfile(os.path.join(folder, "items.jsonl")):
                missing[system].append(run)
                continue
            items = read_items(folder)
            for task in sorted({t for t, _ in items}):
                if task not in PRIMARY:
                    continue
                data[system][task][run] = clip_values(items, task)
    for system in systems:
        scored_runs = [run for run in runs if run not in missing[system]]
        for task, per_run in data[system].items():
            if sorted(per_run) != sorted(scored_runs):
                raise StudyError(f"{system}: task {task} is missing from some runs")
            for other in systems:
                theirs = data[other].get(task, {})
                if not theirs:
                    if len(missing[other]) < len(runs):
                        raise StudyError(f"task {task}: {other} has no scores for it "
                                         f"but {system} has")
                    continue  # other has no scored run at all (allow_missing)
                reference_ids = next(iter(theirs.values()))[0]
                if any(ids != reference_ids for ids, _, _ in per_run.values()):
                    raise StudyError(f"task {task}: {system} and {other} were not scored on "
                                     f"the same test clips in every run")
    return data, {system: runs_ for system, runs_ in missing.items() if runs_}


def bootstrap_difference(system_runs, reference_runs, resamples=2000, seed=0):
    """Difference (system - reference) of the corpus metric over all runs' clips, and its
    95 % two-level bootstrap interval.

    Each resample draws, for each system on its own, as many training seeds as it has
    with replacement (a seed's model is one draw of training: its clips are not
    independent of each other), and one set of test clips with replacement shared by
    both systems (the same clips: paired). The interval then covers both sources of
    variation. Resampling (seed, clip) units from one pool instead treats a model's
    clips as independent draws and gives intervals that ignore how much a system moves
    from one training seed to the next, too narrow (an earlier version of the study did
    that; egs/synthetic/RESULTS.md compares the two). With one seed per system the
    interval covers test clips only.
    """
    num_s = np.stack([num for _, num, _ in system_runs])  # [seeds, clips]
    den_s = np.stack([den for _, _, den in system_runs])
    num_r = np.stack([num for _, num, _ in reference_runs])
    den_r = np.stack([den for _, _, den in reference_runs])
    point = corpus_metric(num_s, den_s) - corpus_metric(num_r, den_r)
    rng = np.random.default_rng(seed)
    clips = num_s.shape[1]
    diffs = np.empty(resamples)
    for draw in range(resamples):
        seeds_s = rng.integers(0, len(num_s), len(num_s))
        seeds_r = rng.integers(0, len(num_r), len(num_r))
        chosen = rng.integers(0, clips, clips)
        diffs[draw] = (corpus_metric(num_s[seeds_s][:, chosen], den_s[seeds_s][:, chosen])
                       - corpus_metric(num_r[seeds_r][:, chosen], den_r[seeds_r][:, chosen]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return point, float(low), float(high)


def summarise(runs, systems, reference, resamples=2000, allow_missing=False):
    """Every number of the study as a dict (what :func:`study_markdown` prints).

    With ``allow_missing``, (run, system) pairs not scored yet are left out and listed
    under ``"missing"``: a system's mean and std are over the seeds it has (``"seeds"``),
    its difference to the reference is pooled over the seeds both have.
    """
    if reference not in systems:
        raise StudyError(f"the reference system {reference!r} is not among {systems}")
    data, missing = load_study(runs, systems, allow_missing)
    tasks = sorted({task for per_task in data.values() for task in per_task})
    if not tasks:
        raise StudyError("no (run, system) pair has been scored yet")
    summary = {"runs": list(runs), "systems": list(systems), "reference": reference,
               "tasks": {}, "routing": {}, "missing": missing}
    for task in tasks:
        metric = PRIMARY[task][0]
        scored = next(per_run for per_task in data.values() for t, per_run in per_task.items()
                      if t == task)
        entry = {"metric": metric, "clips_per_run": len(next(iter(scored.values()))[0]),
                 "systems": {}}
        for system in systems:
            per_run = data[system].get(task, {})
            per_seed = [corpus_metric(num, den) for _, num, den in per_run.values()]
            row = {"per_seed": per_seed, "seeds": [os.path.basename(run) for run in per_run],
                   "mean": float(np.mean(per_seed)) if per_seed else math.nan,
                   "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan}
            shared = [run for run in per_run if run in data[reference].get(task, {})]
            if system != reference and shared:
                point, low, high = bootstrap_difference(
                    [per_run[run] for run in shared],
                    [data[reference][task][run] for run in shared], resamples)
                row.update(diff=point, ci_low=low, ci_high=high, diff_seeds=len(shared))
            entry["systems"][system] = row
        summary["tasks"][task] = entry
    for system in systems:
        scored_runs = [run for run in runs if run not in missing.get(system, [])]
        shares = [routing_shares(os.path.join(run, system, "hyps.jsonl")) for run in scored_runs]
        if shares and all(shares):
            pooled = defaultdict(lambda: defaultdict(float))
            for run_shares in shares:
                for task, encoders in run_shares.items():
                    for encoder, share in encoders.items():
                        pooled[task][encoder] += share / len(shares)
            summary["routing"][system] = {task: dict(sorted(enc.items()))
                                          for task, enc in sorted(pooled.items())}
    return summary


def _signed(metric, value):
    return ("+" if value >= 0 else "−") + format_value(metric, abs(value))


def study_markdown(summary):
    """The study as markdown: a mean ± std table, a difference table, routing shares."""
    systems, reference = summary["systems"], summary["reference"]
    tasks = list(summary["tasks"])
    seeds = len(summary["runs"])
    lines = [f"Mean ± standard deviation over {seeds} seed(s); test clips per task and seed: "
             + ", ".join(f"{t.upper()} {summary['tasks'][t]['clips_per_run']}" for t in tasks),
             "", "| system | " + " | ".join(
                 f"{t.upper()} {metric_label(summary['tasks'][t]['metric'])}" for t in tasks)
             + " |", "|---|" + "---|" * len(tasks)]
    for system in systems:
        cells = []
        for task in tasks:
            row, metric = summary["tasks"][task]["systems"][system], summary["tasks"][task]["metric"]
            if not row["per_seed"]:
                cells.append("—")
                continue
            std = "" if math.isnan(row["std"]) else f" ± {format_value(metric, row['std'])}"
            fewer = f" (n={len(row['per_seed'])})" if len(row["per_seed"]) < seeds else ""
            cells.append(format_value(metric, row["mean"]) + std + fewer)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", f"Difference to `{reference}` (points; over the seeds both have) with a "
              "95 % two-level bootstrap interval (training seeds, then test clips paired); "
              "**bold** where the interval excludes 0 (↓ metrics: negative is better). "
              "With one seed the interval covers test clips only (n=1).", "",
              "| system | " + " | ".join(t.upper() for t in tasks) + " |",
              "|---|" + "---|" * len(tasks)]
    for system in systems:
        if system == reference:
            continue
        cells = []
        for task in tasks:
            row, metric = summary["tasks"][task]["systems"][system], summary["tasks"][task]["metric"]
            if "diff" not in row:
                cells.append("—")
                continue
            text = (f"{_signed(metric, row['diff'])} [{_signed(metric, row['ci_low'])}, "
                    f"{_signed(metric, row['ci_high'])}]")
            cells.append(f"**{text}**" if row["ci_low"] > 0 or row["ci_high"] < 0 else text)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    if summary["routing"]:
        lines += ["", "Share of each task's test clips the data-dependent router sends to each "
                  "weak encoder (mean over seeds):", ""]
        for system, shares in summary["routing"].items():
            encoders = sorted({e for s in shares.values() for e in s})
            lines += [f"`{system}`:", "", "| task | " + " | ".join(f"E{e}" for e in encoders)
                      + " |", "|---|" + "---|" * len(encoders)]
            for task, share in shares.items():
                lines.append(f"| {task.upper()} | " + " | ".join(
                    f"{100 * share.get(e, 0.0):.0f} %" for e in encoders) + " |")
            lines.append("")
    if summary.get("missing"):
        lines += ["", "**Not scored yet** (left out above; — where a system has no seed, "
                  "n=k where it has k):", ""]
        for system, runs in summary["missing"].items():
            lines.append(f"- {system}: " + ", ".join(os.path.basename(r) for r in runs))
        lines.append("")
    direction = ", ".join(sorted(LOWER_IS_BETTER & {e["metric"] for e in summary["tasks"].values()}))
    if direction:
        lines.append(f"Lower is better for: {direction}.")
    return "\n".join(lines).rstrip() + "\n"
