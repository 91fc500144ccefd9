#!/usr/bin/env python3
"""Score a hypothesis file per task, next to trivial answerers.

Usage: python recipes/score.py --hyp_file H.jsonl --out scores.json [--train_manifest M]

Metrics (until the scoring module lands): ASR word error rate (jiwer, lower-cased,
punctuation removed); ER and AQA exact-match accuracy; SQA exact match and token F1;
AC token F1 and exact match. The trivial answerers give the same answer to every
item: the most common training answer (majority label for ER/AQA), and the empty
answer for ASR.
"""

import argparse
import json
import re
import sys
from collections import Counter

PRIMARY = {"asr": "wer", "er": "accuracy", "aqa": "accuracy", "sqa": "f1", "ac": "f1"}


def normalise(text):
    """Lower case, punctuation to spaces, single spaces."""
    return " ".join(re.sub(r"[^\w' ]", " ", text.lower()).split())


def token_f1(hyp, ref):
    """SQuAD-style unigram F1 of two normalised strings."""
    hyp_tokens, ref_tokens = normalise(hyp).split(), normalise(ref).split()
    common = sum((Counter(hyp_tokens) & Counter(ref_tokens)).values())
    if not hyp_tokens or not ref_tokens:
        return float(hyp_tokens == ref_tokens)
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def wer(hyps, refs):
    """Corpus-level WER; an empty hypothesis counts every reference word as deleted."""
    import jiwer

    refs = [normalise(r) for r in refs]
    hyps = [normalise(h) for h in hyps]
    keep = [i for i, r in enumerate(refs) if r]
    out = jiwer.process_words([refs[i] for i in keep], [hyps[i] for i in keep])
    return (out.substitutions + out.deletions + out.insertions) / max(
        out.substitutions + out.deletions + out.hits, 1)


def score_task(task, hyps, refs):
    """Metrics of one task."""
    if task == "asr":
        return {"wer": wer(hyps, refs)}
    exact = sum(normalise(h) == normalise(r) for h, r in zip(hyps, refs)) / len(refs)
    if task in ("er", "aqa"):
        return {"accuracy": exact}
    return {"f1": sum(map(token_f1, hyps, refs)) / len(refs), "exact_match": exact}


def trivial_answer(task, answers):
    """The constant answer of the trivial answerer."""
    if task == "asr" or not answers:
        return ""
    return Counter(normalise(a) for a in answers).most_common(1)[0][0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hyp_file", required=True)
    parser.add_argument("--out", required=True, help="per-task scores (JSON)")
    parser.add_argument("--train_manifest", default=None,
                        help="answers for the trivial answerer (default: the test refs)")
    args = parser.parse_args(argv)
    rows = []
    with open(args.hyp_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                sys.exit(f"error: {args.hyp_file}:{number} is not a JSON line")
    if not rows:
        sys.exit(f"error: {args.hyp_file} holds no hypotheses")
    train_answers = {}
    if args.train_manifest:
        with open(args.train_manifest, encoding="utf-8") as handle:
            for entry in json.load(handle).values():
                train_answers.setdefault(entry["task"], []).append(entry["answer"])
    scores = {}
    for task in sorted({row["task"] for row in rows}):
        task_rows = [row for row in rows if row["task"] == task]
        hyps = [row["hyp"] for row in task_rows]
        refs = [row["ref"] for row in task_rows]
        constant = trivial_answer(task, train_answers.get(task, refs))
        scores[task] = {"count": len(refs), "primary": PRIMARY.get(task, "accuracy"),
                        **score_task(task, hyps, refs),
                        "trivial": {"answer": constant,
                                    **score_task(task, [constant] * len(refs), refs)}}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(scores, handle, indent=2)
    for task, row in scores.items():
        metric = row["primary"]
        print(f"{task:4s} {metric} {row[metric]:.3f} (trivial {row['trivial'][metric]:.3f}, "
              f"n={row['count']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
