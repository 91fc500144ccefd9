"""Ask a trained MoWE model about audio files from the command line.

Usage::

    python -m mowe infer --model DIR clip.wav [more.mp3 ...] --instruction "..." [--json]

``DIR`` is a packaged model folder (``python -m mowe pack``, stage 7 of a recipe) or an
experiment folder of one system (``egs/<corpus>/exp/<tag>/<system>``). Clips may be in any
format soundfile or ffmpeg reads, at any sample rate. Prints the answer (one clip) or
``PATH<TAB>ANSWER`` lines; with ``--json``, one JSON object per clip:
``{"audio", "instruction", "answer", "selected", "routers"}`` (``selected``: the weak
encoder each router chose). A clip that cannot be read is reported (``"error"`` in JSON)
and the exit code is 1; the other clips are still answered.
"""

import argparse
import json
import logging
import sys

from mowe.inference.api import DECODING_DEFAULTS


def parse_sources(items):
    """``["llm_source=/models/llm"]`` -> ``{"llm_source": "/models/llm"}``."""
    sources = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(f"--source takes KEY=DIR, not {item!r}")
        sources[key] = value
    return sources


def add_model_arguments(parser):
    """Options shared by the CLI, the server and the demo: which model, where."""
    parser.add_argument("--model", required=True,
                        help="packaged model folder or experiment folder of one system")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    parser.add_argument("--source", action="append", default=[], metavar="KEY=DIR",
                        help="where a frozen model is on this machine, e.g. "
                             "llm_source=/models/smollm2 (repeatable)")
    parser.add_argument("--no_check_sources", action="store_true",
                        help="do not check the frozen models' SHA-256 against the package")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="clips per forward pass (default: the recipe's)")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="build classes the model folder's spec names beyond the "
                             "toolkit's own and torch/SpeechBrain layers (the spec is a "
                             "program: only for folders you trust; off by default)")


def load_model(args):
    """:class:`~mowe.inference.api.AudioLLMInference` from the parsed model options."""
    from mowe.inference.api import AudioLLMInference

    try:
        return AudioLLMInference.from_pretrained(
            args.model, device=args.device, sources=parse_sources(args.source),
            check_sources=not args.no_check_sources, batch_size=args.batch_size,
            trust_remote_code=getattr(args, "trust_remote_code", False))
    except (FileNotFoundError, ValueError, RuntimeError, argparse.ArgumentTypeError) as error:
        sys.exit(f"error: cannot load {args.model}: {error}")


def add_decoding_arguments(parser):
    """Decoding options (defaults: the package's, greedy)."""
    group = parser.add_argument_group("decoding (defaults: the package's; greedy)")
    group.add_argument("--max_new_tokens", type=int)
    group.add_argument("--num_beams", type=int, help="beam size (1: greedy)")
    group.add_argument("--do_sample", action="store_true", default=None,
                       help="sample instead of greedy/beam search")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--top_p", type=float, help="nucleus sampling probability mass")
    group.add_argument("--repetition_penalty", type=float)
    group.add_argument("--seed", type=int, help="random seed for sampling")


def decoding_options(args):
    return {key: getattr(args, key) for key in DECODING_DEFAULTS
            if getattr(args, key, None) is not None}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", nargs="+", help="audio files")
    parser.add_argument("--instruction", required=True, help="what to ask about each clip")
    parser.add_argument("--json", action="store_true", help="one JSON line per clip")
    parser.add_argument("--verbose", action="store_true", help="log loading progress")
    add_model_arguments(parser)
    add_decoding_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from mowe.data.audio import AudioError

    model = load_model(args)
    signals, errors = {}, {}
    for path in args.audio:
        try:
            signals[path] = model.load(path)
        except AudioError as error:
            errors[path] = str(error)
    try:
        answers = model.answer_signals(list(signals.values()),
                                       [args.instruction] * len(signals), seed=args.seed,
                                       **decoding_options(args)) if signals else []
    except ValueError as error:
        sys.exit(f"error: {error}")
    by_path = dict(zip(signals, answers))
    for path in args.audio:
        if path in errors:
            print(f"error: {path}: {errors[path]}", file=sys.stderr)
            if args.json:
                print(json.dumps({"audio": path, "instruction": args.instruction,
                                  "error": errors[path]}), flush=True)
            continue
        answer = by_path[path]
        if args.json:
            print(json.dumps({"audio": path, "instruction": args.instruction,
                              "answer": answer.text, "selected": answer.selected,
                              "routers": answer.routers}, ensure_ascii=False), flush=True)
        elif len(args.audio) == 1:
            print(answer.text)
        else:
            print(f"{path}\t{answer.text}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
