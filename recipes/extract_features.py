#!/usr/bin/env python3
"""Compute the base encoder's features of every clip once (the recipes' features step).

Usage: python recipes/extract_features.py HPARAMS.yaml --feature_cache=DIR [--shard J/N]
       [--feature_dtype=float32|float16] [--key=value ...]

Loads the model of the recipe YAML (with the same overrides as training), and when its
base encoder is frozen and nothing random touches its input (see
:func:`mowe.data.precomputed_features.cache_blockers`) writes the encoder's output for every clip of
``train_manifest``, ``valid_manifest`` and ``test_manifest`` under
``DIR/<fingerprint>/`` (:mod:`mowe.data.precomputed_features`); otherwise it says why and does nothing.
``recipes/train.py`` and ``recipes/decode.py`` given the same ``--feature_cache=DIR``
read them back.

Job arrays: ``--shard J/N`` takes every N-th clip. Each clip's file is written
atomically and a finished shard leaves a marker, so a rerun skips finished shards and,
inside an interrupted one, the clips already written.
"""

import logging
import sys
import time

import torch

from mowe.data.precomputed_features import FeatureCache, FeatureCacheError, cache_blockers, extract, shard_marker
from mowe.recipe.hparams import dataset, load_recipe_hparams, parse_shard, pop_option

logger = logging.getLogger("mowe.data.precomputed_features")


def declared_blockers(argv):
    """:func:`mowe.data.precomputed_features.cache_blockers` read from the YAML text, before any model is
    built: loading a large LLM only to find a trainable encoder would cost minutes.

    Looks at the ``make_encoder`` node of the top-level ``model``; returns None when the
    YAML does not have that shape (the built model is checked then).
    """
    import ruamel.yaml
    import speechbrain as sb
    from hyperpyyaml.core import resolve_references

    from mowe.recipe.hparams import merge_overrides, split_overrides_files

    try:
        args, files = split_overrides_files(list(argv))
        hparams_file, _, overrides = sb.parse_arguments(args)
        if files:
            overrides = merge_overrides(files, overrides)
        with open(hparams_file, encoding="utf-8") as handle:
            text = resolve_references(handle, overrides).getvalue()
        node = ruamel.yaml.YAML().load(text)["model"]["base_encoder"]
    except Exception:  # noqa: BLE001  (any other shape: decided on the built model)
        return None
    if "make_encoder" not in str(getattr(getattr(node, "tag", None), "value", "")):
        return None
    reasons = []
    if not node.get("freeze", False):
        reasons.append("the base encoder is trainable (freeze_base_encoder: False)")
    augment = node.get("augment")
    for module in augment if isinstance(augment, list) else [augment]:
        if module is None:
            continue
        tag = str(getattr(getattr(module, "tag", None), "value", ""))
        if not tag.endswith("SpecAugment") or not isinstance(module, dict) or any(
                module.get(key, default) for key, default in (("time_masks", 2),
                                                              ("freq_masks", 2))):
            reasons.append("augmentation touches its input (spec_augment)")
    return reasons


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    argv = list(argv)
    root = pop_option(argv, "feature_cache")
    if not root:
        sys.exit("error: --feature_cache=DIR is required")
    shard = parse_shard(pop_option(argv, "shard") or "1/1")
    dtype = pop_option(argv, "feature_dtype") or "float32"
    blockers = declared_blockers(argv)
    if blockers:
        logger.info("features: skipped, the base encoder's outputs cannot be cached (%s); "
                    "training and decoding run it on every batch", "; ".join(blockers))
        return 0
    _, run_opts, _, hparams = load_recipe_hparams(argv)
    model = hparams["model"]
    blockers = cache_blockers(model.base_encoder)
    if blockers:
        logger.info("features: skipped, the base encoder's outputs cannot be cached (%s); "
                    "training and decoding run it on every batch", "; ".join(blockers))
        return 0
    cache = FeatureCache(root, model)
    # the clips training (train, valid: up to max_duration) and decoding (test) read
    splits = [(key, hparams[key]) for key in ("train_manifest", "valid_manifest",
                                              "test_manifest") if hparams.get(key)]
    manifests = [manifest for _, manifest in splits]
    trim = getattr(model, "max_audio_seconds", None)
    datasets = [dataset(manifest, None if key == "test_manifest" else hparams.get("max_duration"),
                        trim, hparams.get("tasks")) for key, manifest in splits]
    marker = shard_marker(cache, manifests, shard)
    device = getattr(run_opts, "device", None) or "cpu"
    precision = run_opts.get("precision")
    if precision and precision != "fp32":
        logger.info("features in the encoder's own precision, no autocast: --precision=%s "
                    "applies to training only", precision)
    start = time.time()
    try:
        counts = extract(model, cache, datasets, shard, batch_size=hparams.get("batch_size", 8),
                         device=device, dtype=dtype, marker=marker)
    except FeatureCacheError as error:
        sys.exit(f"error: {error}")
    if counts.get("skipped_shard"):
        logger.info("features: shard %d/%d already done (%s); nothing to do", *shard, marker)
        return 0
    logger.info("features: shard %d/%d: encoded %d clips, %d cached before, %d unreadable, "
                "in %.1f s -> %s", *shard, counts["encoded"], counts["cached"],
                counts["unreadable"], time.time() - start, cache.folder)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main(sys.argv[1:]))
