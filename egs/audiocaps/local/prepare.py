#!/usr/bin/env python3
"""AudioCaps -> audio captioning (AC) manifests (``OUT/{train,valid,test}.json``).

Reads the official caption files and the 10-second clips you downloaded yourself::

    {train,val,test}.csv     audiocap_id,youtube_id,start_time,caption
    <audio_folder>/<audio_pattern>

``--audio_pattern`` is a Python format string relative to ``--audio_folder`` with the
fields ``split`` (the CSV's name: train, val or test), ``youtube_id``, ``start_time`` (as
written in the CSV) and ``audiocap_id``; it may contain a ``*`` wildcard (e.g.
``{split}/{youtube_id}_{start_time}.*``). Any format soundfile reads is accepted; entries
point at the clips (no conversion).

Train: one entry per caption row (id = audiocap_id). Valid and test: one entry per clip
(id = ``<youtube_id>_<start_time>``), answer = its first caption, all captions in
``"captions"``. Clips that are missing are listed per split under ``"missing_clips"``
in ``OUT/prepare_report.json`` and counted on the terminal; their rows are skipped, as
are unreadable clips, empty captions and durations outside the filter.

Example::

    python egs/audiocaps/local/prepare.py --data_folder /corpora/audiocaps/dataset \\
        --audio_folder /corpora/audiocaps/audio --save_folder data/audiocaps
"""

import glob
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

TASK = "ac"
CSV_SPLITS = {"train": "train", "valid": "val", "test": "test"}
CSV_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
PATTERN_FIELDS = ("split", "youtube_id", "start_time", "audiocap_id")


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True,
                        help="folder with AudioCaps' train.csv, val.csv and test.csv")
    parser.add_argument("--audio_folder", default=None,
                        help="root of the downloaded clips (default: --data_folder)")
    parser.add_argument("--audio_pattern", default="{split}/{youtube_id}_{start_time}.wav",
                        help="clip path below --audio_folder, a format string with "
                             "{split} {youtube_id} {start_time} {audiocap_id} "
                             "(default: %(default)s)")
    prep.add_common_arguments(parser)
    args = parser.parse_args(argv)
    check_pattern(parser, args.audio_pattern)
    return args


def check_pattern(parser, pattern):
    """Reject a pattern with unknown fields before any work."""
    try:
        pattern.format(**{field: "x" for field in PATTERN_FIELDS})
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        parser.error(f"--audio_pattern {pattern!r}: bad field {error}; "
                     f"use {', '.join('{' + f + '}' for f in PATTERN_FIELDS)}")


def clip_path(audio_folder, pattern, csv_split, row):
    """The clip file of a CSV row, or ``None`` when it does not exist."""
    relative = pattern.format(split=csv_split, youtube_id=row["youtube_id"],
                              start_time=row["start_time"], audiocap_id=row["audiocap_id"])
    if "*" in relative or "?" in relative:
        matches = sorted(glob.glob(os.path.join(glob.escape(audio_folder), relative)))
        return matches[0] if matches else None
    path = os.path.join(audio_folder, relative)
    return path if os.path.isfile(path) else None


def read_rows(split, csv_path, report):
    """Caption rows with text, as ``(audiocap_id, clip id, row)``."""
    rows = []
    for line, row in prep.read_csv(csv_path, CSV_COLUMNS):
        item = row["audiocap_id"] or f"{os.path.basename(csv_path)}:{line}"
        if not row["youtube_id"] or not row["start_time"]:
            report.skip(split, item, "bad csv row: empty youtube_id or start_time")
        elif not row["caption"]:
            report.skip(split, item, "empty caption")
        else:
            rows.append((item, f"{row['youtube_id']}_{row['start_time']}", row))
    return rows


def group_by_clip(rows):
    """``{clip id: [rows]}`` in order of first appearance."""
    clips = {}
    for _, clip, row in rows:
        clips.setdefault(clip, []).append(row)
    return clips


def split_entries(split, csv_path, args, report):
    """The entries of one split; missing clips are recorded in ``report.extra``."""
    csv_split = CSV_SPLITS[split]
    rows = read_rows(split, csv_path, report)
    clips = group_by_clip(rows)
    paths = {clip: clip_path(args.audio_folder, args.audio_pattern, csv_split, group[0])
             for clip, group in clips.items()}
    missing = [clip for clip, path in paths.items() if path is None]
    report.extra.setdefault("missing_clips", {})[split] = missing
    if missing:
        prep.logger.warning("%s: %d of %d clips missing (listed under missing_clips in %s)",
                            split, len(missing), len(clips), prep.REPORT_NAME)
    durations = prep_audio.measure_durations([p for p in paths.values() if p], args.jobs,
                                       desc=f"{split} durations")
    duration_filter = prep_audio.DurationFilter.from_args(args)
    rng = prep.split_rng(args.seed, split)
    if split == "train":
        items = [(item, clip, [row]) for item, clip, row in rows]
    else:
        items = [(clip, clip, group) for clip, group in clips.items()]
    entries = {}
    for item_id, clip, group in items:
        instruction = draw_instruction(TASK, rng)
        if paths[clip] is None:
            report.skip(split, item_id, f"missing clip: {clip}")
            continue
        duration, reason = prep_audio.checked_duration(durations[paths[clip]], duration_filter)
        if reason:
            report.skip(split, item_id, reason)
            continue
        if item_id in entries:
            report.skip(split, item_id, "duplicate id")
            continue
        captions = [row["caption"] for row in group]
        extra = {"captions": captions} if split != "train" else {}
        entries[item_id] = prep.make_entry(paths[clip], duration, TASK, instruction,
                                           captions[0], clip=clip, **extra)
    return entries


def audiobench_test(args, report):
    """The AudioBench AudioCaps test set, with instructions from the AC pool."""
    rng = prep.split_rng(args.seed, "test")
    return audiobench.prepare_audiobench_test(args, TASK, report,
                                        instruction=lambda _: draw_instruction(TASK, rng))


def main(argv=None):
    """Write ``{train,valid,test}.json`` and ``prepare_report.json``."""
    args = parse_args(argv)
    data_folder = prep.require_folder(args.data_folder, "--data_folder")
    args.audio_folder = prep.require_folder(args.audio_folder or data_folder,
                                            "--audio_folder")
    splits = [s for s in prep.SPLITS if not (s == "test" and args.audiobench_test)]
    csvs = {split: prep.require_file(os.path.join(data_folder, f"{CSV_SPLITS[split]}.csv"),
                                     f"AudioCaps file {CSV_SPLITS[split]}.csv")
            for split in splits}
    prep.write_splits(args.save_folder, csvs,
                      lambda split, report: split_entries(split, csvs[split], args, report),
                      lambda report: audiobench_test(args, report))


if __name__ == "__main__":
    prep.run_main(main)
