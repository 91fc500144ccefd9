#!/usr/bin/env python3
"""MELD -> emotion recognition (ER) manifests (``OUT/{train,valid,test}.json``).

Reads the official release::

    {train,dev,test}_sent_emo.csv   Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,
                                    Utterance_ID,Season,Episode,StartTime,EndTime
    .../dia{Dialogue_ID}_utt{Utterance_ID}.mp4

The clips are found by file name anywhere under ``--data_folder``; as every split reuses
the same names, a clip belongs to the split whose keyword (train / dev / test) occurs in
its folder path (``train_splits/``, ``dev_splits_complete/``,
``output_repeated_splits_test/`` ...). The audio track is extracted with ffmpeg to
``OUT/wav/<split>/`` as 16 kHz mono wav (parallel, resumable).

Labels: neutral, joy, disgust, sadness, surprise, anger, fear. The answer is a sentence
naming the emotion ("The speaker sounds joyful."); the bare label is in ``"label"``.
Skipped (see ``OUT/prepare_report.json``): bad CSV rows (unknown emotion, non-integer
ids), missing clips, clips ffmpeg cannot decode, durations outside the filter.

Example::

    python egs/meld/local/prepare.py --data_folder /corpora/MELD.Raw --save_folder data/meld
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

TASK = "er"
LABELS = ("neutral", "joy", "disgust", "sadness", "surprise", "anger", "fear")
# One answer sentence per label; each names the label or a word the scorer maps back.
ANSWERS = {
    "neutral": "The speaker sounds neutral.",
    "joy": "The speaker sounds joyful.",
    "disgust": "The speaker sounds disgusted.",
    "sadness": "The speaker sounds sad.",
    "surprise": "The speaker sounds surprised.",
    "anger": "The speaker sounds angry.",
    "fear": "The speaker sounds afraid.",
}
CSV_NAMES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv",
             "test": "test_sent_emo.csv"}
CSV_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
SPLIT_KEYWORDS = {"train": ("train",), "valid": ("dev", "val"), "test": ("test",)}


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True,
                        help="the MELD release: the *_sent_emo.csv files and the mp4 folders")
    parser.add_argument("--csv_folder", default=None,
                        help="where the *_sent_emo.csv files are (default: found under "
                             "--data_folder)")
    prep.add_common_arguments(parser)
    return parser.parse_args(argv)


def find_csv(data_folder, csv_folder, name):
    """Path of one ``*_sent_emo.csv``: in ``csv_folder`` or anywhere under the data."""
    if csv_folder:
        return prep.require_file(os.path.join(csv_folder, name), f"MELD file {name}")
    found = prep.index_files(data_folder, (name,)).get(name)
    if not found:
        raise prep.PrepareError(f"MELD file {name} not found under {data_folder}")
    return found[0]


def parse_row(row):
    """``(item id, emotion, utterance, speaker)`` of a CSV row; ValueError if unusable."""
    try:
        dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
    except ValueError:
        raise ValueError(f"bad csv row: non-integer ids Dialogue_ID={row['Dialogue_ID']!r} "
                         f"Utterance_ID={row['Utterance_ID']!r}") from None
    emotion = row["Emotion"].strip().lower()
    if emotion not in LABELS:
        raise ValueError(f"bad csv row: unknown emotion {row['Emotion']!r}")
    return f"dia{dialogue}_utt{utterance}", emotion, row["Utterance"], row["Speaker"]


def clip_for_split(candidates, data_folder, split):
    """The candidate mp4 of ``split`` (by folder keyword); an unlabelled one if it is alone."""
    labelled = {}
    for path in candidates:
        labelled.setdefault(prep.split_of_path(path, data_folder, SPLIT_KEYWORDS), path)
    if split in labelled:
        return labelled[split]
    if len(candidates) == 1 and None in labelled:
        return candidates[0]
    return None


def split_items(split, csv_path, clips, args, report):
    """The usable rows of one split with their mp4, as ``(id, emotion, text, speaker, mp4)``."""
    items, seen = [], set()
    for line, row in prep.read_csv(csv_path, CSV_COLUMNS):
        try:
            item_id, emotion, text, speaker = parse_row(row)
        except ValueError as error:
            report.skip(split, f"{os.path.basename(csv_path)}:{line}", str(error))
            continue
        if item_id in seen:
            report.skip(split, item_id, "duplicate id")
            continue
        seen.add(item_id)
        mp4 = clip_for_split(clips.get(f"{item_id}.mp4", []), args.data_folder, split)
        if mp4 is None:
            report.skip(split, item_id, f"missing mp4: {item_id}.mp4")
            continue
        items.append((item_id, emotion, text, speaker, mp4))
    return items


def split_entries(split, csv_path, clips, args, report):
    """Extract the audio of one split and return its manifest entries."""
    items = split_items(split, csv_path, clips, args, report)
    wav_folder = os.path.join(os.path.abspath(args.save_folder), "wav", split)
    wavs = {item[0]: os.path.join(wav_folder, f"{item[0]}.wav") for item in items}
    failures = prep_audio.convert_to_wav([(item[4], wavs[item[0]]) for item in items], args.jobs,
                                   desc=f"{split} ffmpeg")
    converted = [wav for wav in wavs.values() if failures[wav] is None]
    durations = prep_audio.measure_durations(converted, args.jobs)
    duration_filter = prep_audio.DurationFilter.from_args(args)
    rng = prep.split_rng(args.seed, split)
    labels = ", ".join(LABELS)
    entries = {}
    for item_id, emotion, text, speaker, _ in items:
        instruction = draw_instruction(TASK, rng, labels=labels)
        wav = wavs[item_id]
        if failures[wav]:
            report.skip(split, item_id, failures[wav])
            continue
        duration, reason = prep_audio.checked_duration(durations[wav], duration_filter)
        if reason:
            report.skip(split, item_id, reason)
            continue
        entries[item_id] = prep.make_entry(wav, duration, TASK, instruction, ANSWERS[emotion],
                                           label=emotion, words=text, speaker=speaker)
    return entries


def audiobench_test(args, report):
    """The AudioBench MELD emotion test set, with instructions from the ER pool."""
    from mowe.scoring.answers import extract_emotion

    rng = prep.split_rng(args.seed, "test")
    labels = ", ".join(LABELS)
    return audiobench.prepare_audiobench_test(
        args, TASK, report,
        instruction=lambda _: draw_instruction(TASK, rng, labels=labels),
        extra=lambda answer: {"label": extract_emotion(answer, LABELS)})


def main(argv=None):
    """Write ``{train,valid,test}.json``, the wavs and ``prepare_report.json``."""
    args = parse_args(argv)
    args.data_folder = prep.require_folder(args.data_folder, "--data_folder")
    splits = [s for s in prep.SPLITS if not (s == "test" and args.audiobench_test)]
    csvs = {split: find_csv(args.data_folder, args.csv_folder, CSV_NAMES[split])
            for split in splits}
    prep_audio.require_ffmpeg()
    clips = prep.index_files(args.data_folder, (".mp4",))
    prep.logger.info("found %d mp4 clips under %s", sum(map(len, clips.values())),
                     args.data_folder)
    prep.write_splits(args.save_folder, csvs,
                      lambda split, report: split_entries(split, csvs[split], clips, args, report),
                      lambda report: audiobench_test(args, report))


if __name__ == "__main__":
    prep.run_main(main)
