"""Pack a trained system into a self-contained model folder (with a model card).

Usage::

    python -m mowe pack --exp_dir exp/TAG/SYSTEM --out exp/TAG/packed/SYSTEM \\
        [--routing_plot exp/TAG/routing.png] [--train_log exp/TAG/log/train_SYSTEM.log] \\
        [--recipe_command "egs/synthetic/run.sh ..."] [--license apache-2.0] \\
        [--dataset NAME ...] [--base_model HUB_ID ...] [--push_to_hub USER/REPO]

The folder (see :mod:`mowe.inference.package_format`) holds the resolved spec, the trained weights as
safetensors, the frozen models' sources with the SHA-256 of their weights, the tokenizer
and a Hugging Face model card. It is written next to the target and renamed into place,
then loaded back and checked to answer a probe clip exactly as the experiment does
(``--no_verify`` skips this). ``--push_to_hub`` uploads it with ``huggingface_hub``
(needs network access and a token: ``huggingface-cli login`` or ``HF_TOKEN``).
"""

import argparse
import datetime
import logging
import os
import shutil
import sys

from mowe.inference import package_format as packaging

logger = logging.getLogger("mowe.inference.pack")


def train_command_from_log(path):
    """The command line recorded as the first line of a launcher log (``# TIME CMD``)."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().strip()
    if not first.startswith("#"):
        return None
    parts = first.lstrip("#").strip().split(" ", 1)
    return parts[1] if len(parts) == 2 else None


def read_scores(exp_dir):
    """The system's ``scores.json`` (empty when it was not scored)."""
    import json

    path = os.path.join(exp_dir, "scores.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def count_parameters(state):
    return int(sum(tensor.numel() for tensor in state.values()))


def pack(exp_dir, out, routing_plot=None, train_log=None, recipe_command=None,
         license_name="other", datasets=(), base_models=(), verify=True, overwrite=False):
    """Write the packaged folder of the experiment ``exp_dir`` to ``out``.

    ``out`` must be new, empty, or (with ``overwrite``) a previous package, recognised by
    its ``mowe_package.json``; the package is built in a folder beside it and renamed
    into place, so a folder holding anything else is never touched
    (:class:`mowe.utils.atomic.OutputFolderError` before any work).

    Returns
    -------
    dict
        The package's ``mowe_package.json`` content.
    """
    from safetensors.torch import save_file

    import mowe
    from mowe.inference.api import AudioLLMInference
    from mowe.inference.model_card import render_model_card
    from mowe.provision.model_sources import fingerprint_source

    from mowe.utils.atomic import check_output_folder, replace_folder, staging_folder

    check_output_folder(out, packaging.is_package, overwrite, "package")
    inference = AudioLLMInference.from_pretrained(exp_dir)
    model = inference.model
    spec_text = inference.info["spec"]
    spec = packaging._yaml().load(spec_text)
    sources = {}
    for key in packaging.source_keys(spec):
        gguf = spec.get(key[: -len("_source")] + "_gguf_file")
        logger.info("fingerprinting %s = %s", key, spec[key])
        sources[key] = packaging.relative_source(fingerprint_source(spec[key], gguf), out)
    # the package holds no path of the packing machine: local sources relative to the
    # package folder (mowe_package.json and the spec alike), the cache filled at load
    spec_text = packaging.relative_spec_sources(spec_text, sources)
    checkpoint = dict(inference.info.get("checkpoint") or {})
    if checkpoint.get("path"):
        checkpoint["path"] = os.path.basename(os.path.normpath(checkpoint["path"]))
    state = model.trained_state_dict()
    total = sum(p.numel() for p in model.state_dict().values())
    info = {
        "format_version": packaging.FORMAT_VERSION,
        "name": os.path.basename(os.path.normpath(out)),
        "mowe_version": mowe.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "routers": inference.routers,
        "num_weak_encoders": inference.num_weak_encoders,
        "sources": sources,
        "decoding": inference.decoding,
        "batch_size": inference.info.get("batch_size"),
        "max_duration_trained": inference.info.get("max_duration"),
        "parameters": {"stored": count_parameters(state), "total": int(total)},
        "checkpoint": checkpoint,
        "scores": read_scores(exp_dir),
        "recipe_command": recipe_command,
        "train_command": train_command_from_log(train_log),
        "license": license_name,
        "datasets": list(datasets),
        "base_models": list(base_models),
    }
    partial = staging_folder(out)
    with open(os.path.join(partial, packaging.SPEC_FILE), "w", encoding="utf-8") as handle:
        handle.write(spec_text)
    save_file(state, os.path.join(partial, packaging.WEIGHTS_FILE),
              metadata={"format": "pt", "mowe_format": str(packaging.FORMAT_VERSION)})
    model.tokenizer.save_pretrained(os.path.join(partial, packaging.TOKENIZER_DIR))
    plot = None
    if routing_plot and os.path.isfile(routing_plot) and inference.routers:
        shutil.copyfile(routing_plot, os.path.join(partial, packaging.ROUTING_PLOT))
        plot = packaging.ROUTING_PLOT
    packaging.write_json(os.path.join(partial, packaging.INFO_FILE), info)
    with open(os.path.join(partial, packaging.CARD_FILE), "w", encoding="utf-8") as handle:
        handle.write(render_model_card(info, info["scores"], license_name, datasets,
                                       base_models, routing_plot=plot))
    try:
        if verify:
            verify_package(inference, partial)
        replace_folder(partial, out, packaging.is_package, overwrite, "package")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # the staging folder is ours alone
        raise
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(out) for name in names)
    logger.info("packed %s -> %s (%.1f MB; %d of %d parameters stored, the rest from %s)",
                exp_dir, out, size / 1e6, info["parameters"]["stored"], total,
                ", ".join(record["source"] for record in sources.values()) or "nothing")
    return info


def verify_package(reference, folder):
    """Load ``folder`` and check it answers a probe clip as ``reference`` does."""
    import torch

    from mowe.inference.api import AudioLLMInference

    loaded = AudioLLMInference.from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    probe = [0.1 * torch.randn(16000 + 4000 * k, generator=generator) for k in range(2)]
    instructions = ["Transcribe the speech.", "What emotion does the speaker express?"]
    expected = reference.answer_signals(probe, instructions)
    actual = loaded.answer_signals(probe, instructions)
    if [(a.text, a.selected) for a in expected] != [(a.text, a.selected) for a in actual]:
        raise RuntimeError(f"the package in {folder} does not answer as the experiment does: "
                           f"{[a.text for a in actual]} vs {[a.text for a in expected]}")
    logger.info("verified: the package answers the probe clips as the experiment does")


def push_to_hub(folder, repo_id, private=False, token=None):
    """Upload ``folder`` to the Hugging Face hub as model repository ``repo_id``.

    Raises
    ------
    SystemExit
        With one line saying why when the hub cannot be reached or refuses.
    """
    try:
        from huggingface_hub import HfApi
    except ImportError:  # pragma: no cover - a dependency of transformers
        sys.exit("error: --push_to_hub needs huggingface_hub (pip install huggingface_hub)")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        sys.exit(f"error: cannot push to {repo_id}: HF_HUB_OFFLINE is set (offline mode); "
                 f"unset it on a machine with network access, log in "
                 f"(`huggingface-cli login` or HF_TOKEN) and rerun with --push_to_hub, or "
                 f"upload {folder} yourself")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                                   commit_message="Upload MoWE model packed by mowe.inference.pack")
    except Exception as error:  # network down, no token, no rights ...
        sys.exit(f"error: cannot push {folder} to the hub as {repo_id} "
                 f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})."
                 f" Check the network and your token (`huggingface-cli login` or HF_TOKEN)")
    logger.info("pushed %s to https://huggingface.co/%s (%s)", folder, repo_id,
                getattr(commit, "commit_url", commit))
    return commit


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mowe pack", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", required=True,
                        help="experiment folder of one system (hyperparams.yaml + save/)")
    parser.add_argument("--out", required=True,
                        help="packaged folder to write: new, empty, or a previous package "
                             "with --overwrite (a folder holding anything else is refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous package at --out (atomically)")
    parser.add_argument("--routing_plot", help="routing plot to include (PNG)")
    parser.add_argument("--train_log", help="launcher log whose first line is the command")
    parser.add_argument("--recipe_command", help="the recipe command line, for the card")
    parser.add_argument("--license", default="other", help="license id for the card")
    parser.add_argument("--dataset", action="append", default=[], help="training data set")
    parser.add_argument("--base_model", action="append", default=[],
                        help="hub id of a frozen base model, for the card's base_model")
    parser.add_argument("--no_verify", action="store_true",
                        help="do not load the package back to check it")
    parser.add_argument("--push_to_hub", metavar="REPO",
                        help="also upload the folder to this Hugging Face model repo")
    parser.add_argument("--private", action="store_true", help="create the hub repo private")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not packaging.is_experiment(args.exp_dir):
        sys.exit(f"error: {args.exp_dir} is not an experiment folder of one system "
                 "(hyperparams.yaml + save/): train it first")
    from mowe.utils.atomic import OutputFolderError

    try:
        pack(args.exp_dir, args.out, args.routing_plot, args.train_log, args.recipe_command,
             args.license, args.dataset, args.base_model, verify=not args.no_verify,
             overwrite=args.overwrite)
    except OutputFolderError as error:
        sys.exit(f"error: {error}")
    if args.push_to_hub:
        push_to_hub(args.out, args.push_to_hub, private=args.private)
    return 0


if __name__ == "__main__":
    sys.exit(main())
