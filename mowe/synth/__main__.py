"""Command line: write the synthetic 5-task corpus."""

import argparse
import logging
import sys

from mowe.synth.corpus import SIZES, generate_corpus
from mowe.synth.speech import SpeechSynthesisError


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mowe.synth",
        description="Write the offline synthetic 5-task corpus (ASR, ER, AQA, SQA, AC): "
                    "16 kHz wavs and train/valid/test manifests.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", default="tiny", choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        paths = generate_corpus(args.out, args.size, args.seed, args.jobs)
    except SpeechSynthesisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
