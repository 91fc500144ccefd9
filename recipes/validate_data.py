#!/usr/bin/env python3
"""Check every clip of the manifests; write clean manifests and a report of skips.

Usage: python recipes/validate_data.py --manifests a.json b.json --out_dir DIR
       [--min_duration 0.05]

Each clip is decoded the way training will read it; a missing, unreadable, empty or
too-short clip is left out of ``DIR/<name>.json`` and listed with its reason in
``DIR/validation_report.json``. The count of skipped clips is printed per manifest:
nothing is dropped silently.
"""

import argparse
import json
import logging
import os
import sys

from tqdm import tqdm

from mowe.data import AudioError, ManifestError, load_audio, read_manifest

logger = logging.getLogger("mowe.validate")


def check(entry, min_duration):
    """Reason the clip is unusable, or None."""
    try:
        audio = load_audio(entry["wav"], start=entry.get("start"), stop=entry.get("stop"))
    except AudioError as error:
        return str(error)
    seconds = audio.shape[0] / 16000
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
        kept, skipped = {}, {}
        for utt, entry in tqdm(entries.items(), desc=f"checking {name}"):
            reason = check(entry, args.min_duration)
            if reason is None:
                kept[utt] = entry
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
        print(f"{name}: kept {len(kept)}, skipped {len(skipped)}")
    with open(os.path.join(args.out_dir, "validation_report.json"), "w",
              encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
