#!/usr/bin/env python3
"""Score every kept epoch of a training: validation loss and per-task test scores by epoch.

Usage: python recipes/learning_curve.py --train_manifest=TRAIN.json [--epochs=1,2,4]
       HPARAMS.yaml --output_folder=EXP/SYSTEM [the decode.py arguments of the system]

The arguments after the options are those ``recipes/decode.py`` took for the system (the
first line of ``EXP/log/decode_SYSTEM.log`` holds them). The training must have run with
``--keep_epoch_checkpoints=True``. For each epoch checkpoint (or those of ``--epochs``)
this decodes the test set into ``OUTPUT_FOLDER/curve/epochN/hyps.jsonl`` with
``decode.py --checkpoint_epoch=N`` and scores it with ``mowe score``; both resume (a
finished epoch is not decoded again). It then writes ``OUTPUT_FOLDER/curve/curve.json``
and ``curve.md``: per epoch, the learning rate, training and validation loss of
``train_log.txt`` and each task's primary score.
"""

import argparse
import json
import os
import re
import subprocess
import sys


HERE = os.path.dirname(os.path.abspath(__file__))


class CurveError(RuntimeError):
    """A folder or log this tool needs is missing or unreadable."""


def kept_epochs(save_folder):
    """Epoch numbers of the end-of-epoch checkpoints under ``save_folder``, sorted
    (:func:`mowe.train.checkpoints.saved_epochs`; no folder is created for a missing one)."""
    if not os.path.isdir(save_folder):
        return []
    from mowe.train.checkpoints import AtomicCheckpointer, saved_epochs

    return saved_epochs(AtomicCheckpointer(save_folder))


def read_train_log(path):
    """Per epoch ``{"lr", "train_loss", "valid_loss"}`` from SpeechBrain's ``train_log.txt``.

    Lines look like ``epoch: 2, lr: 1.0e-03 - train loss: 1.74, ... - valid loss: 1.17, ...``;
    when a resumed run logged an epoch twice, the last line counts.
    """
    epochs = {}
    if not os.path.isfile(path):
        return epochs
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"epoch: (\d+)", line)
            if not match:
                continue
            row = {}
            for key, pattern in (("lr", r"lr: ([-+0-9.eE]+)"),
                                 ("train_loss", r"train loss: ([-+0-9.eE]+)"),
                                 ("valid_loss", r"valid loss: ([-+0-9.eE]+)")):
                found = re.search(pattern, line)
                if found:
                    row[key] = float(found.group(1))
            epochs[int(match.group(1))] = row
    return epochs


def primary_scores(scores_file):
    """``{task: (metric, value)}`` of a ``mowe score`` ``scores.json``."""
    with open(scores_file, encoding="utf-8") as handle:
        scores = json.load(handle)
    return {task: (entry["primary"], entry[entry["primary"]])
            for task, entry in sorted(scores.items())
            if isinstance(entry, dict) and "primary" in entry}


def curve_table(rows):
    """Markdown table of the curve rows (scores in %, as the recipes' reports)."""
    tasks = sorted({task for row in rows for task in row["scores"]})
    metrics = {task: next(row["scores"][task][0] for row in rows if task in row["scores"])
               for task in tasks}
    header = ["epoch", "lr", "train loss", "valid loss"] + [f"{t} {metrics[t]}" for t in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["epoch"])]
        cells.append(f"{row['lr']:.2e}" if "lr" in row else "")
        cells += [f"{row[k]:.3f}" if k in row else "" for k in ("train_loss", "valid_loss")]
        cells += [f"{100 * row['scores'][t][1]:.1f}" if t in row["scores"] else ""
                  for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(command, log_file):
    """Run ``command``, its output appended to ``log_file``; raise on failure."""
    with open(log_file, "a", encoding="utf-8") as log:
        log.write("# " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise CurveError(f"{command[1]} failed (exit {result.returncode}); see {log_file}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s --train_manifest=M [--epochs=1,2] "
                                           "HPARAMS.yaml --output_folder=DIR [decode args]")
    parser.add_argument("--train_manifest", required=True,
                        help="training manifest (mowe score's trivial answers)")
    parser.add_argument("--epochs", default=None,
                        help="comma-separated epochs to score (default: every kept one)")
    args, decode_args = parser.parse_known_args(argv)
    folders = [a.split("=", 1)[1] for a in decode_args if a.startswith("--output_folder=")]
    if not decode_args or not folders:
        parser.error("give the system's decode.py arguments, with --output_folder=DIR")
    folder = folders[-1]
    kept = kept_epochs(os.path.join(folder, "save"))
    wanted = kept if args.epochs is None else [int(e) for e in args.epochs.split(",")]
    missing = sorted(set(wanted) - set(kept))
    if not kept or missing:
        sys.exit(f"error: {folder}/save holds the checkpoints of epochs {kept or 'none'}, "
                 f"not {missing or wanted}: train with --keep_epoch_checkpoints=True")
    curve_dir = os.path.join(folder, "curve")
    log = read_train_log(os.path.join(folder, "train_log.txt"))
    rows = []
    try:
        for epoch in wanted:
            out = os.path.join(curve_dir, f"epoch{epoch}")
            os.makedirs(out, exist_ok=True)
            run([sys.executable, os.path.join(HERE, "decode.py"), *decode_args,
                 f"--checkpoint_epoch={epoch}", f"--hyp_file={out}/hyps.jsonl"],
                os.path.join(out, "decode.log"))
            run([sys.executable, "-m", "mowe", "score", "--hyp_file", f"{out}/hyps.jsonl",
                 "--out_dir", out, "--train_manifest", args.train_manifest],
                os.path.join(out, "score.log"))
            rows.append({"epoch": epoch, **log.get(epoch, {}),
                         "scores": primary_scores(os.path.join(out, "scores.json"))})
    except CurveError as error:
        sys.exit(f"error: {error}")
    with open(os.path.join(curve_dir, "curve.json"), "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2)
    table = curve_table(rows)
    with open(os.path.join(curve_dir, "curve.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
