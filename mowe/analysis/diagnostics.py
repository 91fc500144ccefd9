"""Diagnostics of a trained model.

``grad_conflict``: do the tasks pull the adapter's shared parameters in different
directions? For a few batches per task, the gradient of the next-token loss with
respect to the parameters every token passes through (the whole dense adapter; the gate
and the shared experts of the MoE adapter) is averaged per task; the task x task matrix
of cosine similarities between these gradients is printed, saved as JSON and as a
heatmap. Negative entries are conflicting tasks: the motivation of the MoE adapter,
measured on the data instead of assumed.

Usage::

    python -m mowe diagnostics grad_conflict --config egs/synthetic/conf/train.yaml \\
        --checkpoint exp/default_seed1234/mowe/save [--manifest M] [--batches_per_task 4] \\
        [--out DIR] [--key=value overrides of the config, as for train.py]

``probe``: what does each encoder know, at initialisation and after training? Linear
probes (:mod:`mowe.analysis.linear_probe`) on time-pooled features of the base encoder,
each weak encoder, the routed mixture, the adapter's input and the audio tokens, for the
labels the corpus records (emotion, sound-event kinds, voice), fitted on the training
clips and scored on the test clips; the model as the config builds it (its
initialisation, with the config's seed) and, with ``--checkpoint``, as trained. Writes
``probe.json`` and ``probe.md``::

    python -m mowe diagnostics probe --config egs/synthetic/conf/train.yaml \\
        [--checkpoint exp/default_seed1234/mowe/save] [--train_manifest M] \\
        [--test_manifest M] [--max_clips_per_task N] [--out DIR] [--key=value overrides]

``--checkpoint`` is a save folder (its best checkpoint, lowest validation loss, is used)
or one ``CKPT+...`` folder. The manifest defaults to the config's ``valid_manifest``
(``grad_conflict``) or its train and test manifests (``probe``).
"""

import argparse
import json
import logging
import os
import sys

import torch

logger = logging.getLogger("mowe.analysis.diagnostics")


def shared_adapter_parameters(adapter):
    """The adapter parameters every token's gradient reaches."""
    if hasattr(adapter, "shared_parameters"):
        return [p for p in adapter.shared_parameters() if p.requires_grad]
    return [p for p in adapter.parameters() if p.requires_grad]


def task_gradients(parameters, batches_by_task, loss_of):
    """Mean gradient of ``loss_of(batch)`` over each task's batches, flattened.

    Arguments
    ---------
    parameters : list of torch.nn.Parameter
    batches_by_task : dict
        ``{task: [batch, ...]}``.
    loss_of : callable
        ``batch -> scalar loss``.

    Returns
    -------
    dict
        ``{task: 1-D gradient}``.
    """
    gradients = {}
    for task, batches in batches_by_task.items():
        total = None
        for batch in batches:
            grads = torch.autograd.grad(loss_of(batch), parameters, allow_unused=True)
            flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                              for g, p in zip(grads, parameters)]).double()
            total = flat if total is None else total + flat
        gradients[task] = total / len(batches)
    return gradients


def cosine_matrix(gradients):
    """``(tasks, matrix)``: cosine similarity between every pair of task gradients.

    Example
    -------
    >>> tasks, matrix = cosine_matrix({"a": torch.tensor([1.0, 0.0]),
    ...                                "b": torch.tensor([-1.0, 0.0])})
    >>> tasks, matrix.tolist()
    (['a', 'b'], [[1.0, -1.0], [-1.0, 1.0]])
    """
    tasks = sorted(gradients)
    stacked = torch.stack([gradients[t] for t in tasks])
    unit = stacked / stacked.norm(dim=1, keepdim=True).clamp_min(1e-30)
    matrix = (unit @ unit.T).clamp(-1, 1)
    matrix.fill_diagonal_(1.0)
    return tasks, matrix


def format_matrix(tasks, matrix):
    """The matrix as an aligned text table."""
    width = max(6, *(len(t) for t in tasks))
    lines = [" " * width + "".join(f"{t:>{width + 2}}" for t in tasks)]
    for task, row in zip(tasks, matrix.tolist()):
        lines.append(f"{task:<{width}}" + "".join(f"{v:>{width + 2}.3f}" for v in row))
    return "\n".join(lines)


def plot_matrix(tasks, matrix, path, title):
    """Save the matrix as a heatmap (diverging colours, -1 .. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.2 * len(tasks) + 2, 1.1 * len(tasks) + 1.5))
    image = axis.imshow(matrix.numpy(), cmap="RdBu", vmin=-1, vmax=1)
    axis.set_xticks(range(len(tasks)), tasks)
    axis.set_yticks(range(len(tasks)), tasks)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            axis.text(j, i, f"{float(matrix[i, j]):.2f}", ha="center", va="center",
                      fontsize=9)
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def resolve_checkpoint(path):
    """A ``CKPT+...`` folder: ``path`` itself, or the best one of a save folder."""
    import yaml

    if not os.path.isdir(path):
        sys.exit(f"error: checkpoint folder not found: {path}")
    if os.path.isfile(os.path.join(path, "model.ckpt")):
        return path
    scored = []
    for name in os.listdir(path):
        meta = os.path.join(path, name, "CKPT.yaml")
        if name.startswith("CKPT") and os.path.isfile(meta):
            with open(meta, encoding="utf-8") as handle:
                loss = (yaml.safe_load(handle) or {}).get("loss")
            if isinstance(loss, (int, float)):
                scored.append((loss, name))
    if not scored:
        sys.exit(f"error: {path} holds no checkpoint with a validation loss: train first")
    return os.path.join(path, min(scored)[1])


def batches_per_task(manifest, batch_size, limit):
    """``{task: [PaddedBatch, ...]}``: the first ``limit`` batches of each task."""
    from speechbrain.dataio.batch import PaddedBatch

    from mowe.data import make_dataset

    dataset = make_dataset(manifest)
    by_task = {}
    for index in range(len(dataset)):
        item = dataset[index]
        if torch.is_tensor(item["sig"]):
            by_task.setdefault(item["task"], []).append(item)
    return {task: [PaddedBatch(items[i:i + batch_size])
                   for i in range(0, len(items), batch_size)][:limit]
            for task, items in sorted(by_task.items())}


def grad_conflict(argv):
    """The ``grad_conflict`` command (see the module docstring)."""
    from mowe.recipe.hparams import load_recipe_hparams

    parser = argparse.ArgumentParser(prog="mowe diagnostics grad_conflict",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="recipe YAML (as for train.py)")
    parser.add_argument("--checkpoint", required=True,
                        help="save folder (its best checkpoint) or one CKPT+... folder")
    parser.add_argument("--manifest", default=None, help="default: the config's valid set")
    parser.add_argument("--batches_per_task", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--out", default=None,
                        help="folder for grad_conflict.json/.png (default: the checkpoint's "
                             "experiment folder)")
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _, _, _, hparams = load_recipe_hparams([args.config, *overrides])
    checkpoint = resolve_checkpoint(args.checkpoint)
    model = hparams["model"]
    model.load_checkpoint(os.path.join(checkpoint, "model.ckpt"))
    model.eval()  # no dropout: the gradient of the model as it answers
    manifest = args.manifest or hparams["valid_manifest"]
    batches = batches_per_task(manifest, args.batch_size, args.batches_per_task)
    if len(batches) < 2:
        sys.exit(f"error: {manifest} holds fewer than two tasks: nothing to compare")
    parameters = shared_adapter_parameters(model.adapter)
    kind = type(model.adapter).__name__

    def loss_of(batch):
        wavs, wav_lens = batch.sig
        return model(wavs, wav_lens, batch.instruction, batch.answer).next_token_loss

    gradients = task_gradients(parameters, batches, loss_of)
    tasks, matrix = cosine_matrix(gradients)
    out = args.out or os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    os.makedirs(out, exist_ok=True)
    title = f"gradient cosine, {kind} shared parameters"
    clips = {task: sum(len(b.id) for b in task_batches) for task, task_batches in batches.items()}
    print(f"{title} ({sum(p.numel() for p in parameters)} parameters; clips per task: "
          + ", ".join(f"{task} {count}" for task, count in clips.items()) + ")")
    print(format_matrix(tasks, matrix))
    record = {"adapter": kind, "checkpoint": checkpoint, "manifest": manifest,
              "parameters": sum(p.numel() for p in parameters), "tasks": tasks,
              "clips_per_task": clips,
              "cosine": [[round(v, 6) for v in row] for row in matrix.tolist()]}
    with open(os.path.join(out, "grad_conflict.json.tmp"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    os.replace(os.path.join(out, "grad_conflict.json.tmp"),
               os.path.join(out, "grad_conflict.json"))
    plot_matrix(tasks, matrix, os.path.join(out, "grad_conflict.png"), title)
    print(f"saved {out}/grad_conflict.json and grad_conflict.png")
    return 0


def _limit_per_task(entries, limit):
    if not limit:
        return entries
    kept, counts = {}, {}
    for utt, entry in entries.items():
        task = entry.get("task")
        if counts.get(task, 0) < limit:
            kept[utt] = entry
            counts[task] = counts.get(task, 0) + 1
    return kept


def probe(argv):
    """The ``probe`` command (see the module docstring)."""
    from mowe.data.manifest import read_manifest
    from mowe.analysis.linear_probe import probe_model, probe_table
    from mowe.recipe.hparams import load_recipe_hparams

    parser = argparse.ArgumentParser(prog="mowe diagnostics probe",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="recipe YAML (as for train.py)")
    parser.add_argument("--checkpoint", default=None,
                        help="save folder (its best checkpoint) or one CKPT+... folder; "
                             "without it only the model at initialisation is probed")
    parser.add_argument("--train_manifest", default=None, help="default: the config's")
    parser.add_argument("--test_manifest", default=None, help="default: the config's")
    parser.add_argument("--max_clips_per_task", type=int, default=0,
                        help="at most this many clips of each task per manifest (0: all)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--out", default=None, help="folder for probe.json/.md (default: "
                        "the checkpoint's experiment folder, or the config's output_folder)")
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _, _, _, hparams = load_recipe_hparams([args.config, *overrides])
    model = hparams["model"]
    train = _limit_per_task(read_manifest(args.train_manifest or hparams["train_manifest"]),
                            args.max_clips_per_task)
    test = _limit_per_task(read_manifest(args.test_manifest or hparams["test_manifest"]),
                           args.max_clips_per_task)
    results = {"init": probe_model(model, train, test, args.batch_size)}
    checkpoint = None
    if args.checkpoint:
        checkpoint = resolve_checkpoint(args.checkpoint)
        model.load_checkpoint(os.path.join(checkpoint, "model.ckpt"))
        results["trained"] = probe_model(model, train, test, args.batch_size)
    if not any(results.values()):
        sys.exit("error: no clip of the manifests carries a label the probes know "
                 "(emotion: ER clips; events: clips with a scene; voice)")
    table = probe_table(results)
    print(table)
    out = args.out or (os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
                       if checkpoint else hparams["output_folder"])
    os.makedirs(out, exist_ok=True)
    from mowe.utils.atomic import write_text_atomic

    write_text_atomic(os.path.join(out, "probe.json"), json.dumps(
        {"checkpoint": checkpoint, "results": results}, indent=2) + "\n")
    write_text_atomic(os.path.join(out, "probe.md"), table)
    print(f"saved {out}/probe.json and probe.md")
    return 0


COMMANDS = {"grad_conflict": grad_conflict, "probe": probe}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
