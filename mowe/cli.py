"""The ``mowe`` command: one console script with a subcommand per tool.

``mowe <command> --help`` prints a command's options; ``python -m mowe <command>`` is the
same. Each command is the ``main(argv)`` of one module, imported only when it runs, so
``mowe --help`` starts in well under a second.
"""

import importlib
import sys

# command -> (module, arguments put before the user's, one line of help). Argparse's own
# subparsers would need every module's parser built (and torch imported) for --help.
COMMANDS = {
    "infer": ("mowe.inference.ask", [], "ask a trained model about audio files"),
    "serve": ("mowe.inference.model_server", [],
              "serve a trained model behind an OpenAI-compatible HTTP API"),
    "web": ("mowe.inference.web_demo", [], "a browser demo of a trained model (Gradio)"),
    "pack": ("mowe.inference.pack", [], "pack a trained system into a model folder"),
    "smoke": ("mowe.inference.smoke_check", [],
              "smoke check of a trained model on sentences spoken by espeak-ng"),
    "provision": ("mowe.provision.bundled_models", [],
                  "convert the bundled small pretrained models (offline)"),
    "synth": ("mowe.synth.__main__", [], "write the offline synthetic 5-task corpus"),
    "score": ("mowe.scoring.__main__", ["score"], "per-task metrics of one hypothesis file"),
    "aggregate": ("mowe.scoring.__main__", ["aggregate"],
                  "merge several experiments' scores into one table"),
    "study": ("mowe.scoring.__main__", ["study"],
              "several seeds of several systems, with bootstrap intervals"),
    "judge-serve": ("mowe.scoring.judge_server", [],
                    "serve a local causal LM as the scoring judge"),
    "whisper-reference": ("mowe.scoring.whisper_reference", [],
                          "transcribe a test set with Whisper's own decoder"),
    "diagnostics": ("mowe.analysis.diagnostics", [],
                    "gradient conflict between tasks; linear probes of the encoders"),
    "specialists": ("mowe.train.specialists", [],
                    "pretrain specialist weak encoders on their own corpora"),
    "launch": ("mowe.recipe.launch", [], "run one recipe job locally or on Slurm"),
    "selfcheck": ("mowe.utils.selfcheck", [], "end-to-end self-check on a tiny corpus"),
}


def usage():
    """The text of ``mowe --help``."""
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mowe <command> [options]   (mowe <command> --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    """Run ``mowe <command> ...``; returns the command's exit status.

    Examples
    --------
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: mowe <command> [options]...
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mowe: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, prefix, _ = COMMANDS[name]
    # argparse names the program after sys.argv[0] where a module leaves prog unset
    sys.argv[0] = f"mowe {name}"
    status = importlib.import_module(module).main(prefix + rest)
    return status or 0
