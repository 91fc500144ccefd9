"""Command line: write the synthetic 5-task corpus."""

import argparse
import logging
import sys

from mowe.utils.atomic import OutputPathError
from mowe.synth.corpus import SIZES, generate_corpus, merge_shards
from mowe.synth.speech import SpeechSynthesisError


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mowe synth",
        description="Write the offline synthetic 5-task corpus (ASR, ER, AQA, SQA, AC): "
                    "16 kHz wavs and train/valid/test manifests.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", default="tiny", choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--shard", default=None, metavar="J/N",
                        help="make only shard J of N (a job of an array)")
    parser.add_argument("--merge_shards", type=int, default=None, metavar="N",
                        help="join the N shard manifests into train/valid/test.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.merge_shards:
            paths = merge_shards(args.out, args.merge_shards)
        else:
            shard = None
            if args.shard:
                try:
                    shard = tuple(int(x) for x in args.shard.split("/"))
                    assert len(shard) == 2
                except (ValueError, AssertionError):
                    parser.error(f"--shard must look like 2/4, not {args.shard!r}")
            paths = generate_corpus(args.out, args.size, args.seed, args.jobs, shard=shard)
    except (SpeechSynthesisError, FileNotFoundError, ValueError, OutputPathError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
