"""Helpers shared by the recipe entry points in ``recipes/`` (train, decode)."""

import logging
import os
import sys

logger = logging.getLogger(__name__)


def load_recipe_hparams(argv):
    """Parse SpeechBrain-style arguments and load the recipe YAML.

    Returns
    -------
    hparams_file, run_opts, overrides, hparams
    """
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if not os.path.isfile(hparams_file):
        sys.exit(f"error: hparams file not found: {hparams_file}")
    with open(hparams_file, encoding="utf-8") as handle:
        try:
            hparams = load_hyperpyyaml(handle, overrides)
        except Exception as error:  # HyperPyYAML raises many types; say which file.
            sys.exit(f"error: cannot load {hparams_file} with overrides {overrides!r}: {error}")
    return hparams_file, run_opts, overrides, hparams


def dataset(manifest, max_duration=None):
    """A dataset from ``manifest``, dropping (and counting) clips over ``max_duration``."""
    from mowe.data import make_dataset, read_manifest

    data = make_dataset(manifest)
    if max_duration:
        total = len(read_manifest(manifest))
        data = data.filtered_sorted(key_max_value={"duration": max_duration})
        if len(data) < total:
            logger.warning("%s: skipped %d of %d clips longer than %.1f s", manifest,
                           total - len(data), total, max_duration)
    return data


