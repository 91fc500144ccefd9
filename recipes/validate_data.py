#!/usr/bin/env python3
"""Check every clip of the manifests; write clean manifests and a report of skips.

Usage: python recipes/validate_data.py --manifests a.json b.json --out_dir DIR
       [--min_duration 0.05] [--trim_seconds 30]

Each clip is decoded the way training will read it; a missing, unreadable, empty or
too-short clip is left out of ``DIR/<name>.json`` and listed with its reason in
``DIR/validation_report.json``. The count of skipped clips is printed per manifest:
nothing is dropped silently. With ``--trim_seconds`` (the paper recipes: 30, the model's
``max_audio_seconds``) the clips longer than that are kept, and counted and listed as
trimmed: every encoder will see only their first ``trim_seconds``.
"""

import argparse
import json
import logging
import os
import sys

from tqdm import tqdm

from mowe.data import AudioError, ManifestError, load_audio, read_manifest

logger = logging.getLogger("mowe.validate")


def check(entry, min_duration, seconds_out=None):
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
    if not bool(audio.isfinite().all()):
        return "audio holds NaN or infinite samples"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", nargs="+", required=True)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--min_duration", type=float, default=0.05)
    parser.add_argument("--trim_seconds", type=float, default=None,
                        help="count (and list) the clips longer than this: trimmed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.makedirs(args.out_dir, exist_ok=True)
    report = {}
    for manifest in args.manifests:
        try:
            entries = read_manifest(manifest)
        except ManifestError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        name = os.path.basename(manifest)
        kept, skipped, trimmed = {}, {}, {}
        for utt, entry in tqdm(entries.items(), desc=f"checking {name}"):
            seconds = []
            reason = check(entry, args.min_duration, seconds)
            if reason is None:
                kept[utt] = entry
                if args.trim_seconds and seconds[0] > args.trim_seconds:
                    trimmed[utt] = round(seconds[0], 3)
            else:
                skipped[utt] = reason
                logger.warning("skipping %s: %s", utt, reason)
        if not kept:
            print(f"error: no usable clip in {manifest}", file=sys.stderr)
            return 1
        out = os.path.join(args.out_dir, name)
        with open(out + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(kept, handle, indent=1, sort_keys=True)
        os.replace(out + ".tmp", out)
        report[name] = {"kept": len(kept), "skipped": len(skipped), "reasons": skipped}
        line = f"{name}: kept {len(kept)}, skipped {len(skipped)}"
        if args.trim_seconds:
            report[name].update(trim_seconds=args.trim_seconds, trimmed=len(trimmed),
                                trimmed_durations=trimmed)
            line += f", trimmed to {args.trim_seconds:g} s {len(trimmed)}"
        print(line)
    with open(os.path.join(args.out_dir, "validation_report.json"), "w",
              encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
