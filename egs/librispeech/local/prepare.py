#!/usr/bin/env python3
"""LibriSpeech -> ASR manifests (``OUT/{train,valid,test}.json``) in the toolkit's schema.

Reads the official layout::

    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("ID TEXT" lines)

Entries point at the flac files (no conversion). The answer is the lower-cased
transcript; the original upper-case text is kept in ``"words"``. Skipped (and listed in
``OUT/prepare_report.json``): transcript lines without a flac, lines without text,
unreadable audio, durations outside ``--min_duration``/``--max_duration``.

Example::

    python egs/librispeech/local/prepare.py --data_folder /corpora --save_folder data/librispeech \\
        --train_splits train-clean-100 --valid_splits dev-clean --test_splits test-clean
"""

import os
import sys

try:
    import mowe  # noqa: F401
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from mowe.data import prepare as prep
from mowe.data import prepare_audio as prep_audio
from mowe.data import audiobench
from mowe.data.instructions import draw_instruction

TASK = "asr"
FOLDER_NAME = "LibriSpeech"


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True,
                        help="the folder holding LibriSpeech/, or LibriSpeech/ itself")
    parser.add_argument("--train_splits", nargs="+",
                        default=["train-clean-100", "train-clean-360", "train-other-500"],
                        help="subsets for train.json (default: %(default)s)")
    parser.add_argument("--valid_splits", nargs="+", default=["dev-clean"],
                        help="subsets for valid.json (default: %(default)s)")
    parser.add_argument("--test_splits", nargs="+", default=["test-clean"],
                        help="subsets for test.json (default: %(default)s)")
    prep.add_common_arguments(parser)
    return parser.parse_args(argv)


def corpus_root(data_folder, subsets):
    """``DATA/LibriSpeech`` if it exists, else ``DATA`` when it holds the subsets."""
    data_folder = prep.require_folder(data_folder, "--data_folder")
    nested = os.path.join(data_folder, FOLDER_NAME)
    if os.path.isdir(nested):
        return nested
    if any(os.path.isdir(os.path.join(data_folder, subset)) for subset in subsets):
        return data_folder
    raise prep.PrepareError(f"no {FOLDER_NAME}/ folder and none of the subsets "
                            f"{', '.join(subsets)} in {data_folder}")


def subset_folder(root, subset):
    """The folder of one subset (e.g. ``dev-clean``), or a clear error."""
    folder = os.path.join(root, subset)
    if not os.path.isdir(folder):
        found = sorted(name for name in os.listdir(root)
                       if os.path.isdir(os.path.join(root, name)))
        raise prep.PrepareError(f"LibriSpeech subset {subset} not found in {root} "
                                f"(found: {', '.join(found) or 'nothing'})")
    return folder


def transcript_lines(folder):
    """``(utterance id, text, flac path)`` of every line of the subset's transcripts."""
    items = []
    for directory, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".trans.txt"):
                continue
            with open(os.path.join(directory, name), encoding="utf-8",
                      errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    utt_id, _, text = line.strip().partition(" ")
                    items.append((utt_id, text.strip(), os.path.join(directory, f"{utt_id}.flac")))
    return items


def split_entries(split, folders, args, report):
    """The manifest of one split, made of one or more LibriSpeech subset folders."""
    lines = []
    for folder in folders:
        lines += transcript_lines(folder)
    usable = []
    for utt_id, text, flac in lines:
        if not text:
            report.skip(split, utt_id, "empty transcript")
        elif not os.path.isfile(flac):
            report.skip(split, utt_id, f"missing flac: {os.path.basename(flac)}")
        else:
            usable.append((utt_id, text, flac))
    durations = prep_audio.measure_durations([flac for _, _, flac in usable], args.jobs,
                                       desc=f"{split} durations")
    duration_filter = prep_audio.DurationFilter.from_args(args)
    rng = prep.split_rng(args.seed, split)
    entries = {}
    for utt_id, text, flac in usable:
        instruction = draw_instruction(TASK, rng)
        duration, reason = prep_audio.checked_duration(durations[flac], duration_filter)
        if reason:
            report.skip(split, utt_id, reason)
            continue
        if utt_id in entries:
            report.skip(split, utt_id, "duplicate id")
            continue
        entries[utt_id] = prep.make_entry(flac, duration, TASK, instruction, text.lower(),
                                          words=text)
    return entries


def audiobench_test(args, report):
    """The AudioBench LibriSpeech test set, with instructions from the ASR pool."""
    rng = prep.split_rng(args.seed, "test")
    return audiobench.prepare_audiobench_test(
        args, TASK, report,
        instruction=lambda _: draw_instruction(TASK, rng),
        answer=lambda text: text.lower(),
        extra=lambda text: {"words": text})


def main(argv=None):
    """Write ``{train,valid,test}.json`` and ``prepare_report.json``."""
    args = parse_args(argv)
    subsets = {"train": args.train_splits, "valid": args.valid_splits,
               "test": [] if args.audiobench_test else args.test_splits}
    root = corpus_root(args.data_folder, [s for names in subsets.values() for s in names])
    folders = {split: [subset_folder(root, subset) for subset in names]
               for split, names in subsets.items()}  # all checked before any work
    corpus_splits = [s for s in prep.SPLITS if not (s == "test" and args.audiobench_test)]
    prep.write_splits(args.save_folder, corpus_splits,
                      lambda split, report: split_entries(split, folders[split], args, report),
                      lambda report: audiobench_test(args, report))


if __name__ == "__main__":
    prep.run_main(main)
