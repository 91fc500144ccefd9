#!/usr/bin/env python3
"""Clotho-AQA -> audio question answering (AQA) manifests (``OUT/{train,valid,test}.json``).

Reads the official release::

    audio_files/<name>.wav
    clotho_aqa_{train,val,test}.csv    file_name,QuestionText,answer,confidence  (latin-1)

Each clip has six questions, each answered by three annotators. By default every CSV
row is one entry (extra field ``"confidence"``); with ``--majority_answer`` there is one
entry per (clip, question) holding the majority answer (ties: the answer seen first)
and all answers in ``"answers"``. The instruction is the question text (or, with
``--wrap_questions``, the question inside a phrase from the AQA instruction pool);
answers are lower-cased and stripped. Entries point at the original wavs.

Skipped (see ``OUT/prepare_report.json``): rows whose wav is missing or unreadable,
rows with an empty question or answer, durations outside the filter.

Example::

    python egs/clotho_aqa/local/prepare.py --data_folder /corpora/clotho_aqa \\
        --save_folder data/clotho_aqa --majority_answer
"""

import os
import sys
from collections import Counter

try:
    import mowe  # noqa: F401
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from mowe.data import prepare as prep
from mowe.data import prepare_audio as prep_audio
from mowe.data import audiobench
from mowe.data.instructions import draw_instruction

TASK = "aqa"
CSV_NAMES = {"train": "clotho_aqa_train.csv", "valid": "clotho_aqa_val.csv",
             "test": "clotho_aqa_test.csv"}
CSV_COLUMNS = ("file_name", "QuestionText", "answer")
ENCODINGS = ("latin-1",)


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True,
                        help="the Clotho-AQA folder with the clotho_aqa_*.csv files")
    parser.add_argument("--audio_folder", default=None,
                        help="folder of the wav files (default: DATA/audio_files)")
    parser.add_argument("--majority_answer", action="store_true",
                        help="one entry per (clip, question) with the majority answer")
    parser.add_argument("--wrap_questions", action="store_true",
                        help="wrap each question in an instruction from the AQA pool")
    prep.add_common_arguments(parser)
    return parser.parse_args(argv)


def read_rows(split, csv_path, report):
    """``(file name, question, answer, confidence)`` of the CSV rows with text."""
    rows = []
    for line, row in prep.read_csv(csv_path, CSV_COLUMNS, encodings=ENCODINGS):
        item = f"{os.path.basename(csv_path)}:{line}"
        question, answer = row["QuestionText"].strip(), row["answer"].strip().lower()
        if not row["file_name"]:
            report.skip(split, item, "bad csv row: empty file_name")
        elif not question:
            report.skip(split, item, "empty question")
        elif not answer:
            report.skip(split, item, "empty answer")
        else:
            rows.append((row["file_name"], question, answer, row.get("confidence", "")))
    return rows


def per_row_items(rows):
    """One item per row: ``(id, file name, question, answer, extra fields)``."""
    counts, items = Counter(), []
    for name, question, answer, confidence in rows:
        stem = os.path.splitext(name)[0]
        items.append((f"{stem}__{counts[name]:02d}", name, question, answer,
                      {"confidence": confidence} if confidence else {}))
        counts[name] += 1
    return items


def majority_items(rows):
    """One item per (clip, question) with the most frequent answer (first seen on ties)."""
    groups = {}
    for name, question, answer, _ in rows:
        groups.setdefault((name, question), []).append(answer)
    per_clip, items = Counter(), []
    for (name, question), answers in groups.items():
        counts = Counter(answers)
        best = max(counts.values())
        majority = next(answer for answer in answers if counts[answer] == best)
        stem = os.path.splitext(name)[0]
        items.append((f"{stem}__q{per_clip[name]}", name, question, majority,
                      {"answers": answers}))
        per_clip[name] += 1
    return items


def split_entries(split, csv_path, audio_folder, args, report):
    """The manifest entries of one split."""
    rows = read_rows(split, csv_path, report)
    items = majority_items(rows) if args.majority_answer else per_row_items(rows)
    wavs = {name: os.path.join(audio_folder, name) for _, name, _, _, _ in items}
    present = [path for path in wavs.values() if os.path.isfile(path)]
    durations = prep_audio.measure_durations(present, args.jobs, desc=f"{split} durations")
    duration_filter = prep_audio.DurationFilter.from_args(args)
    rng = prep.split_rng(args.seed, split)
    entries = {}
    for item_id, name, question, answer, extra in items:
        instruction = (draw_instruction(TASK, rng, question=question)
                       if args.wrap_questions else question)
        wav = wavs[name]
        if wav not in durations:
            report.skip(split, item_id, f"missing wav: {name}")
            continue
        duration, reason = prep_audio.checked_duration(durations[wav], duration_filter)
        if reason:
            report.skip(split, item_id, reason)
            continue
        entries[item_id] = prep.make_entry(wav, duration, TASK, instruction, answer,
                                           file_name=name, question=question, **extra)
    return entries


def audiobench_test(args, report):
    """The AudioBench Clotho-AQA test set (its instruction is the question)."""
    rng = prep.split_rng(args.seed, "test")

    def instruction(question):
        return draw_instruction(TASK, rng, question=question) if args.wrap_questions \
            else question

    return audiobench.prepare_audiobench_test(args, TASK, report, instruction=instruction,
                                        answer=lambda text: text.strip().lower())


def main(argv=None):
    """Write ``{train,valid,test}.json`` and ``prepare_report.json``."""
    args = parse_args(argv)
    data_folder = prep.require_folder(args.data_folder, "--data_folder")
    audio_folder = prep.require_folder(args.audio_folder or os.path.join(data_folder,
                                                                         "audio_files"),
                                       "Clotho-AQA audio folder (--audio_folder)")
    splits = [s for s in prep.SPLITS if not (s == "test" and args.audiobench_test)]
    csvs = {split: prep.require_file(os.path.join(data_folder, CSV_NAMES[split]),
                                     f"Clotho-AQA file {CSV_NAMES[split]}")
            for split in splits}
    prep.write_splits(args.save_folder, csvs,
                      lambda split, report: split_entries(split, csvs[split], audio_folder, args, report),
                      lambda report: audiobench_test(args, report))


if __name__ == "__main__":
    prep.run_main(main)
