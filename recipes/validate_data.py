#!/usr/bin/env python3
"""Check every entry and clip of the manifests; write clean manifests and a report of skips.

Usage: python recipes/validate_data.py --manifests a.json b.json --out_dir DIR
       [--min_duration 0.05] [--duration_tolerance 0.1] [--trim_seconds 30]
       [--tasks asr er ... | --tasks_from conf/train.yaml]

Each entry is checked field by field (``wav``, ``duration``, ``task`` — one of the known
tasks, or of the recipe's ``tasks:`` with ``--tasks_from`` —, ``instruction``,
``answer``, optional ``start``/``stop``: presence and type), ids must be unique (a
repeated id's later entries are skipped), and each clip is decoded the way training will
read it: a missing, unreadable, empty, non-finite or too-short clip,
or one whose length disagrees with the manifest's duration by more than the tolerance
(e.g. a truncated file), is left out of ``DIR/<name>.json`` and listed with its reason
in ``DIR/validation_report.json``. The counts are printed per manifest, with the number
of skips per reason: nothing is dropped silently. Two manifests with the same file name
would write the same output and are refused before anything is written. With
``--trim_seconds`` (the paper recipes: 30, the model's ``max_audio_seconds``) the clips
longer than that are kept, and counted and listed as trimmed: every encoder will see
only their first ``trim_seconds``.
"""

import argparse
import json
import logging
import os
import sys
from collections import Counter

from tqdm import tqdm

from mowe.utils.atomic import OutputPathError, write_text_atomic
from mowe.data import AudioError, ManifestError, load_audio
from mowe.data.manifest import load_manifest_entries
from mowe.data.tasks import TASKS
from mowe.recipe.hparams import recipe_tasks

logger = logging.getLogger("mowe.validate")


def duration_tolerance(expected, tolerance):
    """Allowed difference in seconds: ``tolerance`` or 1 % of the clip, the larger."""
    return max(tolerance, 0.01 * expected)


def check(entry, min_duration, tolerance=0.1, seconds_out=None):
    """Reason the clip is unusable, or None (``seconds_out``: list receiving its length)."""
    try:
        audio = load_audio(entry["wav"], start=entry.get("start"), stop=entry.get("stop"))
    except AudioError as error:
        return str(error)
    seconds = audio.shape[0] / 16000
    if seconds_out is not None:
        seconds_out.append(seconds)
    if seconds < min_duration:
        return f"too short ({seconds:.3f} s)"
    if entry.get("stop") is not None:
        expected = entry["stop"] - (entry.get("start") or 0)
        what = "stop - start"
    else:
        expected, what = entry["duration"], "the manifest's duration"
    if abs(seconds - expected) > duration_tolerance(expected, tolerance):
        return (f"duration mismatch: the audio holds {seconds:.3f} s, {what} says "
                f"{expected:.3f} s (truncated or wrong file?)")
    return None


def reason_kind(reason):
    """A short label of a skip reason, for the per-reason counts."""
    for kind in ("duplicate id", "duration mismatch", "not found", "cannot read", "empty",
                 "NaN or infinite", "too short", "unknown task", "missing", "not a string",
                 "not a number"):
        if kind in reason:
            return kind
    return "invalid field"


def output_names(manifests):
    """Output file name per manifest; exits if two manifests would write the same one."""
    names = {}
    for manifest in manifests:
        name = os.path.basename(manifest)
        if name in names:
            sys.exit(f"error: {names[name]} and {manifest} would both be written to "
                     f"--out_dir as {name}; validate them into separate --out_dir folders "
                     "or rename one")
        names[name] = manifest
    return {manifest: name for name, manifest in names.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", nargs="+", required=True)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--min_duration", type=float, default=0.05,
                        help="shortest usable clip in seconds (default 0.05)")
    parser.add_argument("--duration_tolerance", type=float, default=0.1,
                        help="allowed difference between a clip's length and its manifest "
                             "duration, in seconds (or 1%% of the clip, the larger; "
                             "default 0.1)")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--tasks", nargs="+", default=None,
                       help=f"task names entries may use (default: {' '.join(TASKS)})")
    names.add_argument("--tasks_from", metavar="CONFIG", default=None,
                       help="take the task names from a recipe YAML's 'tasks:' key (what "
                            "training will keep; run.sh passes conf/train.yaml); the "
                            "default names when it has none")
    parser.add_argument("--trim_seconds", type=float, default=None,
                        help="count (and list) the clips longer than this: trimmed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tasks = tuple(args.tasks or TASKS)
    if args.tasks_from:
        if not os.path.isfile(args.tasks_from):
            print(f"error: --tasks_from {args.tasks_from}: no such file", file=sys.stderr)
            return 2
        try:
            tasks = recipe_tasks(args.tasks_from) or tuple(TASKS)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"task names from {args.tasks_from}: {' '.join(tasks)}")
    names = output_names(args.manifests)
    os.makedirs(args.out_dir, exist_ok=True)
    report = {}
    for manifest in args.manifests:
        try:
            entries, skipped = load_manifest_entries(manifest, tasks)
        except ManifestError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for utt, reason in skipped.items():
            logger.warning("skipping %s: %s", utt, reason)
        name = names[manifest]
        kept, trimmed = {}, {}
        for utt, entry in tqdm(entries.items(), desc=f"checking {name}"):
            seconds = []
            reason = check(entry, args.min_duration, args.duration_tolerance, seconds)
            if reason is None:
                kept[utt] = entry
                if args.trim_seconds and seconds[0] > args.trim_seconds:
                    trimmed[utt] = round(seconds[0], 3)
            else:
                skipped[utt] = reason
                logger.warning("skipping %s: %s", utt, reason)
        counts = Counter(reason_kind(reason) for reason in skipped.values())
        detail = f" ({', '.join(f'{k}: {v}' for k, v in counts.most_common())})" \
            if counts else ""
        if not kept:
            print(f"error: no usable clip in {manifest}: skipped {len(skipped)}{detail}; "
                  f"the task names allowed: {' '.join(tasks)}", file=sys.stderr)
            return 1
        try:
            write_text_atomic(os.path.join(args.out_dir, name),
                              json.dumps(kept, indent=1, sort_keys=True))
        except OutputPathError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        report[name] = {"manifest": os.path.abspath(manifest), "kept": len(kept),
                        "skipped": len(skipped), "skipped_by_reason": dict(counts),
                        "reasons": skipped}
        line = f"{name}: kept {len(kept)}, skipped {len(skipped)}{detail}"
        if args.trim_seconds:
            report[name].update(trim_seconds=args.trim_seconds, trimmed=len(trimmed),
                                trimmed_durations=trimmed)
            line += f", trimmed to {args.trim_seconds:g} s {len(trimmed)}"
        print(line)
    try:
        write_text_atomic(os.path.join(args.out_dir, "validation_report.json"),
                          json.dumps(report, indent=2))
    except OutputPathError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
