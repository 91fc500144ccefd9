"""Per-task metrics of a hypothesis file, with a trivial answerer for reference.

A hypothesis file is JSON lines ``{"id", "task", "instruction", "hyp", "ref"}`` (as
``recipes/decode.py`` writes it; ``ref`` may be a list of references). Each task gets
its deterministic metrics and, optionally, model-as-judge scores:

====  ===========================================================  ===========
task  metrics                                                      primary
====  ===========================================================  ===========
asr   WER (AudioBench normalisation), plain WER, S/D/I counts      wer
er    accuracy of the extracted emotion label, exact match         accuracy
aqa   accuracy (yes/no extraction, else exact match), yes/no acc.  accuracy
sqa   SQuAD exact match and token F1                               f1
ac    NLTK METEOR (AudioBench), Java METEOR 1.5, token F1          meteor_nltk
====  ===========================================================  ===========
"""

import json
import logging
from collections import Counter

from mowe.scoring import answers, meteor
from mowe.scoring.wer import corpus_wer

logger = logging.getLogger(__name__)

PRIMARY = {"asr": "wer", "er": "accuracy", "aqa": "accuracy", "sqa": "f1",
           "ac": "meteor_nltk"}
LOWER_IS_BETTER = {"wer", "wer_plain"}
JUDGED_TASKS = ("er", "aqa", "sqa", "ac")
REQUIRED_FIELDS = ("id", "task", "hyp", "ref")


class HypothesisFileError(ValueError):
    """A hypothesis file that cannot be scored (with the offending line)."""


def read_hypotheses(path):
    """Rows of a hypothesis file, validated.

    Raises
    ------
    HypothesisFileError
        On a missing file, a line that is not UTF-8 or not a JSON object, a missing or
        ill-typed field (``id`` a string or integer; ``task`` a string; ``hyp`` a string
        or null; ``ref`` a string or a non-empty list of strings, non-empty for ASR;
        ``instruction`` a string or null), a duplicate id or an empty file — naming the
        file, the line and the field.
    """
    rows, seen = [], set()
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise HypothesisFileError(f"cannot read hypothesis file {path}: {error}") from error
    with handle:
        for number, raw in enumerate(handle, 1):
            row = _parse_line(raw, f"{path}:{number}")
            if row is None:
                continue
            if row["id"] in seen:
                raise HypothesisFileError(f"{path}:{number}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise HypothesisFileError(f"{path} holds no hypotheses")
    return rows


def _parse_line(raw, where):
    """One validated row from the bytes of a line (None for a blank line)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HypothesisFileError(f"{where}: not UTF-8 text (byte {raw[error.start]:#04x} "
                                  f"at column {error.start + 1})") from error
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise HypothesisFileError(f"{where}: not a JSON line ({error})") from error
    if not isinstance(row, dict):
        raise HypothesisFileError(f"{where}: expected a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in row]
    if missing:
        raise HypothesisFileError(f"{where}: missing field(s) {', '.join(missing)}")
    problem = _field_problem(row)
    if problem:
        raise HypothesisFileError(f"{where}: {problem}")
    row["task"] = row["task"].lower()
    row["hyp"] = row["hyp"] or ""
    return row


def _type_name(value):
    return "null" if value is None else type(value).__name__


def _field_problem(row):
    """What is wrong with a row's field types (naming the field), or None."""
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
        return f"field 'id' must be a string or an integer, not {_type_name(row['id'])}"
    if not isinstance(row["task"], str) or not row["task"].strip():
        return f"field 'task' must be a task name, not {row['task']!r}"
    if row["hyp"] is not None and not isinstance(row["hyp"], str):
        return f"field 'hyp' must be a string or null, not {_type_name(row['hyp'])}"
    if row.get("instruction") is not None and not isinstance(row["instruction"], str):
        return (f"field 'instruction' must be a string or null, not "
                f"{_type_name(row['instruction'])}")
    ref = row["ref"]
    refs = ref if isinstance(ref, list) else [ref]
    if not refs or not all(isinstance(r, str) for r in refs):
        return (f"field 'ref' must be a string or a non-empty list of strings, not "
                f"{ref!r}"[:200])
    if row["task"].lower() == "asr" and not any(r.strip() for r in refs):
        return "field 'ref' is empty: an ASR reference must hold the transcript"
    return None


def unknown_tasks(rows):
    """Task -> number of rows, for the tasks of ``rows`` with no task-specific metrics."""
    counts = Counter(row["task"] for row in rows if row["task"] not in PRIMARY)
    return dict(sorted(counts.items()))


def warn_unknown_tasks(rows, source="hypotheses"):
    """Log one warning per unknown task, naming the tasks this module knows.

    Returns
    -------
    dict
        :func:`unknown_tasks` of ``rows``.
    """
    unknown = unknown_tasks(rows)
    for task, count in unknown.items():
        logger.warning("%s: task %r (%d row(s)) is not a known task (known: %s): scored with "
                       "the generic SQuAD exact match and F1; fix the task names if this "
                       "is a typo", source, task, count, ", ".join(sorted(PRIMARY)))
    return unknown


def _first(ref):
    return ref if isinstance(ref, str) else (ref[0] if ref else "")


def deterministic_metrics(task, hyps, refs, java_meteor=True):
    """Metrics of one task (all in 0-1 except the counts) and per-item values.

    Parameters
    ----------
    task : str
    hyps : list of str
    refs : list of (str or list of str)
    java_meteor : bool
        Also run METEOR 1.5 (needs Java) for captioning.

    Returns
    -------
    (dict, list of dict)
        Task metrics and one dict of item metrics per hypothesis.
    """
    n = len(hyps)
    if task == "asr":
        normalised = corpus_wer(hyps, [_first(r) for r in refs], normalise=True)
        plain = corpus_wer(hyps, [_first(r) for r in refs], normalise=False)
        metrics = {"wer": normalised.wer, "wer_plain": plain.wer,
                   "substitutions": normalised.substitutions,
                   "deletions": normalised.deletions, "insertions": normalised.insertions,
                   "reference_words": normalised.reference_words}
        # Per clip, the normalised edit counts (jiwer aligns each pair on its own, so the
        # clips' counts add up to the corpus's): what a bootstrap over clips resamples.
        per_item = []
        for hyp, ref in zip(hyps, refs):
            clip = corpus_wer([hyp], [_first(ref)], normalise=True)
            per_item.append({"word_errors": clip.substitutions + clip.deletions
                             + clip.insertions,
                             "reference_words": clip.reference_words})
        return metrics, per_item
    if task == "er":
        predicted = [answers.extract_emotion(h) for h in hyps]
        gold = [answers.extract_emotion(_first(r)) for r in refs]
        correct = [float(p is not None and p == g) for p, g in zip(predicted, gold)]
        metrics = {"accuracy": sum(correct) / n,
                   "exact_match": sum(answers.exact_match(h, r) for h, r in zip(hyps, refs)) / n,
                   "unlabelled_answers": sum(p is None for p in predicted),
                   "unlabelled_references": sum(g is None for g in gold)}
        return metrics, [{"label": p, "correct": c} for p, c in zip(predicted, correct)]
    if task == "aqa":
        correct = [answers.short_answer_match(h, _first(r)) for h, r in zip(hyps, refs)]
        yes_no = [c for c, r in zip(correct, refs) if answers.is_yes_no(_first(r))]
        metrics = {"accuracy": sum(correct) / n,
                   "exact_match": sum(answers.exact_match(h, r) for h, r in zip(hyps, refs)) / n,
                   "yes_no_accuracy": sum(yes_no) / len(yes_no) if yes_no else None,
                   "yes_no_items": len(yes_no)}
        return metrics, [{"correct": c} for c in correct]
    if task == "ac":
        mean, items = meteor.meteor_nltk(hyps, refs)
        f1 = [answers.token_f1(h, r) for h, r in zip(hyps, refs)]
        metrics = {"meteor_nltk": mean, "f1": sum(f1) / n}
        per_item = [{"meteor_nltk": m, "f1": f} for m, f in zip(items, f1)]
        if java_meteor:
            try:
                metrics["meteor_java"], java_items = meteor.meteor_java(hyps, refs)
                for item, value in zip(per_item, java_items):
                    item["meteor_java"] = value
            except RuntimeError as error:
                logger.warning("Java METEOR skipped: %s", error)
                metrics["meteor_java"] = None
        return metrics, per_item
    # sqa and any other task: SQuAD metrics
    em = [answers.exact_match(h, r) for h, r in zip(hyps, refs)]
    f1 = [answers.token_f1(h, r) for h, r in zip(hyps, refs)]
    return ({"exact_match": sum(em) / n, "f1": sum(f1) / n},
            [{"exact_match": e, "f1": f} for e, f in zip(em, f1)])


def trivial_answer(task, train_answers):
    """The trivial answerer's constant answer: empty for ASR, else the most common
    training answer (the majority label for ER and AQA)."""
    if task == "asr" or not train_answers:
        return ""
    counts = Counter(answers.normalize_answer(_first(a)) for a in train_answers)
    return counts.most_common(1)[0][0]


def score_rows(rows, train_answers=None, java_meteor=True, judge=None, judge_template=None,
               judge_cache=None, judge_tasks=JUDGED_TASKS, progress=True, judge_parse=None,
               judge_template_name=None):
    """Score hypothesis rows per task.

    Parameters
    ----------
    rows : list of dict
        From :func:`read_hypotheses`.
    train_answers : dict, optional
        task -> training answers, for the trivial answerer (default: the test refs).
    java_meteor : bool
    judge : callable, optional
        A judge backend (see :mod:`mowe.scoring.judge`); None skips judging.
    judge_template : str, optional
        Template text (default: the project's rubric).
    judge_parse : callable, optional
        Rating parser (default: :func:`mowe.scoring.judge.parse_rating`, the
        ``Rating: <int>`` line of the project's rubric).
    judge_template_name : str, optional
        Recorded in the scores as ``judge_template``.
    judge_cache : JudgeCache, optional
    judge_tasks : iterable of str

    Returns
    -------
    (dict, list of dict)
        ``scores[task]`` (metrics, ``primary``, ``count``, ``trivial``) and per-item rows.
    """
    from mowe.scoring import judge as judging

    train_answers = train_answers or {}
    scores, items = {}, []
    for task in sorted({row["task"] for row in rows}):
        task_rows = [row for row in rows if row["task"] == task]
        hyps = [row["hyp"] for row in task_rows]
        refs = [row["ref"] for row in task_rows]
        metrics, per_item = deterministic_metrics(task, hyps, refs, java_meteor)
        constant = trivial_answer(task, train_answers.get(task) or refs)
        trivial, _ = deterministic_metrics(task, [constant] * len(refs), refs,
                                           java_meteor=False)
        entry = {"count": len(task_rows), "primary": PRIMARY.get(task, "f1"), **metrics,
                 "trivial": {"answer": constant, **trivial}}
        if judge is not None and task in judge_tasks:
            template = judge_template or judging.load_template()
            graded = judging.judge_items(
                [{"question": row.get("instruction", ""), "reference": _first(row["ref"]),
                  "answer": row["hyp"]} for row in task_rows],
                judge, template, judge_cache, progress=progress,
                parse=judge_parse or judging.parse_rating)
            entry.update(judging.summarise(graded["ratings"], graded["errors"]))
            entry["judge"] = judge.id
            entry["judge_template"] = judge_template_name or "mowe"
            entry["judge_parse"] = getattr(judge_parse, "__name__", "parse_rating")
            entry["judge_requests"] = graded["requests"]
            for item, rating in zip(per_item, graded["ratings"]):
                item["judge_rating"] = rating
        scores[task] = entry
        for row, item in zip(task_rows, per_item):
            items.append({"id": row["id"], "task": task, **item})
    return scores, items
