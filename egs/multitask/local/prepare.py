#!/usr/bin/env python3
"""Combine prepared single-corpus manifests into one multitask data folder.

Each folder given to ``--manifests`` is the ``--save_folder`` of one corpus script
(``egs/<corpus>/local/prepare.py``) holding ``train.json`` (required), ``valid.json``
and ``test.json``. The dataset name is the folder's name (or ``--names``); ids are
prefixed with it (``<name>_<id>``) and every entry gets a ``"dataset"`` field.

Writes ``OUT/{train,valid,test}.json`` and ``OUT/sampling_weights.json``, mapping every
train id to its sampling weight: the dataset's requested weight (``--weights``,
normalised to sum to one) divided by its number of train items, so a weighted sampler
draws each dataset with the requested probability whatever its size. With
``--asr_only_stage1`` it also writes ``OUT/train_stage1.json``, the ASR train entries
alone, for the first stage of the two-stage training (stage one: ASR only).

Example::

    python egs/multitask/local/prepare.py --save_folder data/multitask \\
        --manifests data/librispeech data/meld data/clotho_aqa data/spoken_squad data/audiocaps \\
        --weights 2 1 1 1 1 --asr_only_stage1
"""

import json
import os
import sys

try:
    import mowe  # noqa: F401
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from mowe.data import prepare as prep
from mowe.data.manifest import ManifestError, read_manifest

STAGE1_TASK = "asr"


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--manifests", nargs="+", required=True, metavar="DIR",
                        help="prepared corpus folders (each with train.json ...)")
    parser.add_argument("--save_folder", required=True, help="output folder")
    parser.add_argument("--names", nargs="+", default=None,
                        help="dataset names, one per folder (default: the folder names)")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="sampling weight per dataset (default: equal)")
    parser.add_argument("--asr_only_stage1", action="store_true",
                        help="also write train_stage1.json with the ASR entries only")
    args = parser.parse_args(argv)
    count = len(args.manifests)
    for option in ("names", "weights"):
        given = getattr(args, option)
        if given is not None and len(given) != count:
            parser.error(f"--{option} needs {count} values (one per --manifests folder), "
                         f"got {len(given)}")
    if args.weights is not None and (min(args.weights) < 0 or sum(args.weights) <= 0):
        parser.error("--weights must be non-negative with a positive sum")
    return args


def dataset_names(folders, names):
    """The dataset names; they must be distinct since they prefix the ids."""
    names = names or [os.path.basename(os.path.normpath(folder)) for folder in folders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise prep.PrepareError(f"dataset names must differ, {', '.join(duplicates)} repeats;"
                                " give --names")
    return names


def load_split(folder, split):
    """Entries of ``folder/<split>.json``; ``{}`` when absent (train: an error) or empty."""
    path = os.path.join(folder, f"{split}.json")
    if not os.path.isfile(path):
        if split == "train":
            raise prep.PrepareError(f"train manifest not found: {path}")
        prep.logger.warning("%s: no %s.json, skipped", folder, split)
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            if json.load(handle) == {}:
                prep.logger.warning("%s is empty", path)
                return {}
        return read_manifest(path)
    except (ManifestError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise prep.PrepareError(str(error).splitlines()[0]) from error


def prefixed(entries, name):
    """Entries with ids ``<name>_<id>`` and a ``"dataset"`` field."""
    return {f"{name}_{key}": dict(entry, dataset=name) for key, entry in entries.items()}


def sampling_weights(train_parts, weights):
    """``{id: weight}``: dataset weight (normalised) divided by its number of items."""
    present = {name: weight for name, weight in weights.items() if train_parts[name]}
    total = sum(present.values())
    if total <= 0:
        raise prep.PrepareError("the datasets with train items all have weight 0")
    result = {}
    for name, entries in train_parts.items():
        share = present.get(name, 0.0) / total
        for key in entries:
            result[key] = share / len(entries)
    return result


def main(argv=None):
    """Write the combined manifests, ``sampling_weights.json`` and maybe stage one."""
    args = parse_args(argv)
    folders = [prep.require_folder(folder, "--manifests folder") for folder in args.manifests]
    names = dataset_names(folders, args.names)
    weights = dict(zip(names, args.weights or [1.0] * len(names)))
    parts = {split: {name: prefixed(load_split(folder, split), name)
                     for name, folder in zip(names, folders)} for split in prep.SPLITS}
    save_folder = os.path.abspath(args.save_folder)
    for split in prep.SPLITS:
        combined = {key: entry for entries in parts[split].values()
                    for key, entry in entries.items()}
        prep.write_manifest(combined, os.path.join(save_folder, f"{split}.json"))
        counts = ", ".join(f"{name} {len(parts[split][name])}" for name in names)
        prep.logger.info("%s: %d entries (%s)", split, len(combined), counts)
    prep.write_json_atomic(sampling_weights(parts["train"], weights),
                           os.path.join(save_folder, "sampling_weights.json"))
    if args.asr_only_stage1:
        stage1 = {key: entry for entries in parts["train"].values()
                  for key, entry in entries.items() if entry["task"] == STAGE1_TASK}
        if not stage1:
            raise prep.PrepareError("--asr_only_stage1: no ASR train entries in the inputs")
        prep.write_manifest(stage1, os.path.join(save_folder, "train_stage1.json"))
        prep.logger.info("train_stage1: %d ASR entries", len(stage1))


if __name__ == "__main__":
    prep.run_main(main)
