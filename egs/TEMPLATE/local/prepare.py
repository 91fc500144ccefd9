#!/usr/bin/env python3
"""A folder of clips -> manifests (``OUT/{train,valid,test}.json``) in the toolkit's schema.

The skeleton of a new dataset's preparation: adapt ``read_items`` to the corpus's own
layout; the rest (durations, skip report, splits, instructions) is shared code of
``mowe.data.prepare``. As shipped it reads::

    DATA/answers.tsv     one line per clip: FILE<TAB>ANSWER[<TAB>INSTRUCTION[<TAB>SPLIT]]
    DATA/<FILE>          the audio (wav, flac, ... anything soundfile reads)

A missing INSTRUCTION is drawn from the ``--task`` pool (``mowe.data.instructions``;
AQA and SQA need the question as INSTRUCTION). Without a SPLIT column the clips, in
sorted order, go to test and valid (``--held_out`` of them each, at least one when
there are three or more) and train (the rest). Skipped clips (missing or unreadable
audio, durations outside ``--min_duration``/``--max_duration``) are listed in
``OUT/prepare_report.json``.

Example::

    python local/prepare.py --data_folder /corpora/mydata --save_folder data/raw --task asr
"""

import math
import os
import sys

try:
    import mowe  # noqa: F401
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from mowe.data import prepare as prep
from mowe.data import prepare_audio as prep_audio
from mowe.data.instructions import draw_instruction
from mowe.data.tasks import TASKS


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True, help="the clips and answers.tsv")
    parser.add_argument("--task", default="asr", choices=TASKS,
                        help="the task of every clip (default: %(default)s)")
    parser.add_argument("--held_out", type=float, default=0.1,
                        help="share of clips for valid and for test each, when answers.tsv "
                             "has no SPLIT column (default: %(default)s)")
    prep.add_common_arguments(parser)
    return parser.parse_args(argv)


def read_items(data_folder):
    """``(id, audio path, answer, instruction or None, split or None)`` per clip.

    Adapt this function to a corpus's own layout (CSV, JSON, Kaldi ``text`` ...).
    """
    table = prep.require_file(os.path.join(data_folder, "answers.tsv"), "answers.tsv")
    items = []
    with open(table, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise prep.PrepareError(f"{table}:{number}: expected FILE<TAB>ANSWER, "
                                        f"got {line.strip()!r}")
            name, answer = fields[0].strip(), fields[1].strip()
            instruction = fields[2].strip() if len(fields) > 2 and fields[2].strip() else None
            split = fields[3].strip() if len(fields) > 3 and fields[3].strip() else None
            if split is not None and split not in prep.SPLITS:
                raise prep.PrepareError(f"{table}:{number}: split {split!r} is not one of "
                                        f"{', '.join(prep.SPLITS)}")
            items.append((os.path.splitext(name)[0].replace("/", "_"),
                          os.path.join(data_folder, name), answer, instruction, split))
    return items


def assign_splits(items, held_out):
    """``{split: [items]}``: the SPLIT column, or test/valid/train over sorted ids."""
    if all(item[4] for item in items):
        return {split: [i for i in items if i[4] == split] for split in prep.SPLITS}
    ordered = sorted(items)
    count = math.ceil(len(ordered) * held_out) if held_out > 0 else 0
    if len(ordered) >= 3:
        count = max(1, count)
    count = min(count, len(ordered) // 3)
    return {"test": ordered[:count], "valid": ordered[count:2 * count],
            "train": ordered[2 * count:]}


def main(argv=None):
    """Write ``{train,valid,test}.json`` and ``prepare_report.json``."""
    args = parse_args(argv)
    data_folder = prep.require_folder(args.data_folder, "--data_folder")
    splits = assign_splits(read_items(data_folder), args.held_out)
    duration_filter = prep_audio.DurationFilter.from_args(args)

    def corpus_entries(split, report):
        rng = prep.split_rng(args.seed, split)
        usable = []
        for item in splits[split]:
            if os.path.isfile(item[1]):
                usable.append(item)
            else:
                report.skip(split, item[0], f"missing audio: {os.path.basename(item[1])}")
        durations = prep_audio.measure_durations([item[1] for item in usable], args.jobs,
                                           desc=f"{split} durations")
        entries = {}
        for utt_id, path, answer, instruction, _ in usable:
            duration, reason = prep_audio.checked_duration(durations[path], duration_filter)
            if reason:
                report.skip(split, utt_id, reason)
                continue
            try:
                instruction = instruction or draw_instruction(args.task, rng)
            except KeyError as error:
                raise prep.PrepareError(f"{utt_id}: no instruction given and the "
                                        f"{args.task} pool needs one ({error})") from None
            entries[utt_id] = prep.make_entry(path, duration, args.task, instruction, answer)
        return entries

    prep.write_splits(args.save_folder, prep.SPLITS, corpus_entries, None)


if __name__ == "__main__":
    prep.run_main(main)
