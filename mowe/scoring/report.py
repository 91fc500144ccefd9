"""Markdown tables of scores: one experiment's tasks, or several experiments merged."""

import json
import os

from mowe.scoring.task_metrics import LOWER_IS_BETTER

METRIC_LABELS = {
    "wer": "WER %", "wer_plain": "plain WER %", "accuracy": "accuracy %",
    "exact_match": "exact match %", "f1": "token F1 %", "meteor_nltk": "METEOR (NLTK) %",
    "meteor_java": "METEOR 1.5 (Java) %", "yes_no_accuracy": "yes/no accuracy %",
    "judge_score_failures_as_zero": "judge 0-5 (failures = 0)",
    "judge_score_parsed_only": "judge 0-5 (parsed only)",
}
PERCENT = {"wer", "wer_plain", "accuracy", "exact_match", "f1", "meteor_nltk",
           "meteor_java", "yes_no_accuracy"}


def format_value(metric, value):
    """Percent for 0-1 metrics, two decimals for judge scores, '—' for missing."""
    if value is None:
        return "—"
    if metric in PERCENT:
        return f"{100 * value:.1f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def metric_label(metric):
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑"
    return f"{METRIC_LABELS.get(metric, metric)} {arrow}"


def task_table(scores):
    """One experiment: a row per task with every metric it has."""
    lines = ["| task | n | metric | value | trivial answerer |", "|---|---|---|---|---|"]
    for task, entry in scores.items():
        for metric in METRIC_LABELS:
            if metric not in entry:
                continue
            trivial = entry.get("trivial", {}).get(metric)
            lines.append(f"| {task.upper()} | {entry['count']} | {metric_label(metric)} | "
                         f"{format_value(metric, entry[metric])} | "
                         f"{format_value(metric, trivial)} |")
    judged = [e for e in scores.values() if "judge" in e]
    if judged:
        lines += ["", f"Judge: `{judged[0]['judge']}`. Parse failures per task: " + ", ".join(
            f"{t.upper()} {e['judge_parse_failures']}/{e['judge_items']}"
            for t, e in scores.items() if "judge" in e) + ". " + judge_caveat(judged[0]["judge"])]
    return "\n".join(lines) + "\n"


def judge_caveat(judge_id):
    """The warning a report must carry when the judge is a small local model."""
    if judge_id.startswith("hf:") and "smollm2-135m" in judge_id.lower():
        return ("The judge is SmolLM2-135M, far too small to grade answers: these judge "
                "scores are a smoke test of the pipeline, not comparable with AudioBench's "
                "Llama-3-70B judge.")
    return ""


def load_scores(path):
    """A ``scores.json`` (or a folder holding one)."""
    if os.path.isdir(path):
        path = os.path.join(path, "scores.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing: run `python -m mowe score` first")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def comparison_table(named_scores, metrics=None, trivial=True):
    """Several experiments in one table: a row per system, a column per task metric.

    Parameters
    ----------
    named_scores : dict
        system name -> scores (as written by the score command).
    metrics : dict, optional
        task -> list of metrics to show (default: each task's primary metric, plus the
        judge score when present).
    trivial : bool
        Add the trivial answerer's row (from the first system's scores).
    """
    tasks = sorted({t for s in named_scores.values() for t in s})
    first = next(iter(named_scores.values()))
    columns = []
    for task in tasks:
        entry = next(s[task] for s in named_scores.values() if task in s)
        chosen = (metrics or {}).get(task) or [entry["primary"]] + (
            ["judge_score_failures_as_zero"] if "judge" in entry else [])
        columns += [(task, m) for m in chosen]
    header = ["system"] + [f"{t.upper()} {metric_label(m)}" for t, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if trivial:
        lines.append("| trivial answerer | " + " | ".join(
            format_value(m, first.get(t, {}).get("trivial", {}).get(m)) for t, m in columns)
            + " |")
    for name, scores in named_scores.items():
        lines.append(f"| {name} | " + " | ".join(
            format_value(m, scores.get(t, {}).get(m)) for t, m in columns) + " |")
    return "\n".join(lines) + "\n"


def _asr_pairs(hyp_file):
    """``{id: (hyp, ref)}`` of the ASR rows of a hypothesis file (read and validated by
    :func:`mowe.scoring.task_metrics.read_hypotheses`)."""
    from mowe.scoring.task_metrics import read_hypotheses

    return {row["id"]: (row["hyp"] or "", row["ref"][0] if isinstance(row["ref"], list)
                        else row["ref"])
            for row in read_hypotheses(hyp_file) if row["task"].lower() == "asr"}


# Issue 18's aim: on free-form speech the AudioLLM's WER is at most this multiple of its
# own Whisper's (how much of the encoder's knowledge reaches the LLM).
WHISPER_RATIO_TARGET = 1.5


def whisper_reference_rows(reference_hyp_file, system_hyp_files):
    """``[(name, clips, whisper WER, system WER)]``: each system's ASR WER and the Whisper
    decoder's on the clips both transcribed (AudioBench-normalised corpus WER, fractions;
    ``clips`` 0 and WERs None where they share no clip)."""
    from mowe.scoring.wer import corpus_wer

    reference = _asr_pairs(reference_hyp_file)
    rows = []
    for name, hyp_file in system_hyp_files.items():
        ours = _asr_pairs(hyp_file)
        shared = sorted(set(ours) & set(reference))
        if not shared:
            rows.append((name, 0, None, None))
            continue
        refs = [reference[key][1] for key in shared]
        rows.append((name, len(shared),
                     corpus_wer([reference[key][0] for key in shared], refs).wer,
                     corpus_wer([ours[key][0] for key in shared], refs).wer))
    return rows


def whisper_reference_table(reference_hyp_file, system_hyp_files):
    """ASR WER of each system next to the Whisper decoder's on the same clips.

    Parameters
    ----------
    reference_hyp_file : str
        ``python -m mowe whisper-reference``'s hypotheses.
    system_hyp_files : dict
        system name -> its ``hyps.jsonl``.

    Returns
    -------
    str
        A markdown table: clips, the Whisper decoder's WER, the system's WER, their
        ratio (AudioBench-normalised corpus WER over the clips both transcribed) and
        whether the ratio meets :data:`WHISPER_RATIO_TARGET`.
    """
    target = f"ratio ≤ {WHISPER_RATIO_TARGET:g}"
    lines = [f"| system | ASR clips | Whisper decoder WER % | system WER % | ratio | {target} |",
             "|---|---|---|---|---|---|"]
    for name, clips, whisper, system in whisper_reference_rows(reference_hyp_file,
                                                               system_hyp_files):
        if not clips:
            lines.append(f"| {name} | 0 | — | — | — | — |")
            continue
        if whisper > 0:
            ratio = system / whisper
            met = "yes" if ratio <= WHISPER_RATIO_TARGET else "no"
            lines.append(f"| {name} | {clips} | {100 * whisper:.1f} | {100 * system:.1f} "
                         f"| {ratio:.2f} | {met} |")
        else:
            met = "yes" if system == 0 else "no"
            lines.append(f"| {name} | {clips} | 0.0 | {100 * system:.1f} | — | {met} |")
    return "\n".join(lines) + "\n"
