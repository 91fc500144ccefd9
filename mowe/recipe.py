"""Helpers shared by the recipe entry points in ``recipes/`` (train, decode)."""

import logging
import os
import sys

logger = logging.getLogger(__name__)


def split_overrides_files(argv):
    """Remove ``--overrides_file=PATH`` / ``--overrides_file PATH`` from ``argv``.

    Returns
    -------
    (list, list)
        The remaining arguments and the override files, in order.
    """
    rest, files, args = [], [], list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--overrides_file":
            if not args:
                sys.exit("error: --overrides_file needs a path")
            files.append(args.pop(0))
        elif arg.startswith("--overrides_file="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, files


def merge_overrides(files, cli_overrides):
    """One YAML overrides document: the files in order, then the command line's.

    An overrides file is an ordinary HyperPyYAML document holding only the keys it
    changes (tags such as ``!name:``/``!ref`` are kept), so configuration variants are
    small files applied on top of one recipe YAML instead of copies of it.
    """
    import io

    import ruamel.yaml
    from hyperpyyaml.core import recursive_update

    yaml = ruamel.yaml.YAML()
    merged = None
    sources = [(path, None) for path in files] + [("the command line", cli_overrides)]
    for name, text in sources:
        if text is None:
            if not os.path.isfile(name):
                sys.exit(f"error: overrides file not found: {name}")
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        if not text or not text.strip():
            continue
        try:
            document = yaml.load(text)
        except ruamel.yaml.YAMLError as error:
            sys.exit(f"error: overrides from {name} are not valid YAML: {error}")
        if document is None:
            continue
        if not isinstance(document, dict):
            sys.exit(f"error: overrides from {name} must be a mapping of keys to values")
        if merged is None:
            merged = document
        else:
            recursive_update(merged, document)
    if merged is None:
        return ""
    out = io.StringIO()
    yaml.dump(merged, out)
    return out.getvalue()


def _kind(value):
    """The type family of a plain YAML value ("bool", "int", "float", "list", "map",
    "str"), or None for a tagged value (``!ref``, ``!new:``, ``!PLACEHOLDER`` ...) or null,
    which are not checked."""
    tag = getattr(value, "tag", None)
    if getattr(tag, "value", tag) is not None and not isinstance(value, (bool, int, float, str)):
        return None
    if value is None:
        return None
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "str"


KIND_NAMES = {"bool": "true or false", "int": "a whole number", "float": "a number",
              "list": "a list", "map": "a mapping", "str": "a string"}


def check_override_types(hparams_file, overrides):
    """Exit with one line if a top-level override's type differs from the YAML's value.

    ``--batch_size=abc`` on a YAML holding ``batch_size: 4`` would otherwise fail deep
    inside training with a ValueError; HyperPyYAML checks no types. Integers are accepted
    for floats; ``null`` and keys whose YAML value is tagged (``!ref`` ...) are not checked.
    """
    import ruamel.yaml

    if not overrides or not overrides.strip():
        return
    yaml = ruamel.yaml.YAML()
    try:
        with open(hparams_file, encoding="utf-8") as handle:
            defaults = yaml.load(handle)
        given = yaml.load(overrides)
    except ruamel.yaml.YAMLError:
        return  # reported by load_hyperpyyaml with the file's name
    if not isinstance(defaults, dict) or not isinstance(given, dict):
        return
    for key, value in given.items():
        if key not in defaults:
            continue
        expected, actual = _kind(defaults[key]), _kind(value)
        if expected is None or actual is None or expected == actual:
            continue
        if expected == "float" and actual == "int":
            continue
        sys.exit(f"error: --{key}={value}: {key} must be {KIND_NAMES[expected]} "
                 f"({hparams_file} has {key}: {defaults[key]})")


def pop_option(argv, name):
    """Remove ``--name=value`` / ``--name value`` from the list ``argv``; return the value
    (None when absent): for options of an entry point that are not YAML keys."""
    for index, arg in enumerate(argv):
        if arg == f"--{name}" and index + 1 < len(argv):
            value = argv[index + 1]
            del argv[index:index + 2]
            return value
        if arg.startswith(f"--{name}="):
            del argv[index]
            return arg.split("=", 1)[1]
    return None


def load_recipe_hparams(argv):
    """Parse SpeechBrain-style arguments and load the recipe YAML.

    Besides SpeechBrain's ``--key=value`` overrides, ``--overrides_file=PATH`` (repeatable)
    applies a YAML file of overrides first (e.g. ``recipes/conf/paper/table5_pool.yaml``).

    Returns
    -------
    hparams_file, run_opts, overrides, hparams
    """
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    argv, override_files = split_overrides_files(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if override_files:
        overrides = merge_overrides(override_files, overrides)
    if not os.path.isfile(hparams_file):
        sys.exit(f"error: hparams file not found: {hparams_file}")
    check_override_types(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as handle:
        try:
            hparams = load_hyperpyyaml(handle, overrides)
        except FileNotFoundError as error:  # a model or data folder: the message says which
            sys.exit(f"error: {error}")
        except Exception as error:  # HyperPyYAML raises many types; say which file.
            sys.exit(f"error: cannot load {hparams_file} with overrides {overrides!r}: {error}")
    return hparams_file, run_opts, overrides, hparams


def dataset(manifest, max_duration=None, trim_seconds=None, tasks=None, feature_cache=None):
    """A dataset from ``manifest``, dropping (and counting) clips over ``max_duration``.

    With ``trim_seconds`` (the model's ``max_audio_seconds``) the clips longer than that
    are read only up to it and counted in the log: they are trimmed, not dropped.
    ``tasks``: the task names entries may use (the hparams' ``tasks``; default the
    toolkit's five). A manifest with bad entries ends the program with one line.
    ``feature_cache``: a :class:`mowe.features.FeatureCache` whose features the
    examples carry as ``base_feats``.
    """
    from mowe.data import ManifestError, make_dataset, read_manifest
    from mowe.tasks import TASKS

    try:
        data = make_dataset(manifest, trim_seconds=trim_seconds, tasks=tuple(tasks or TASKS),
                            feature_cache=feature_cache)
    except ManifestError as error:
        sys.exit(f"error: {error}")
    if trim_seconds:
        entries = read_manifest(manifest, tuple(tasks or TASKS))
        longer = sum(float(e["duration"]) > trim_seconds for e in entries.values()
                     if not max_duration or float(e["duration"]) <= max_duration)
        if longer:
            logger.warning("%s: %d of %d clips are longer than %.1f s and are trimmed to "
                           "their first %.1f s", manifest, longer, len(entries),
                           trim_seconds, trim_seconds)
    if max_duration:
        total = len(read_manifest(manifest, tuple(tasks or TASKS)))
        data = data.filtered_sorted(key_max_value={"duration": max_duration})
        if len(data) < total:
            logger.warning("%s: skipped %d of %d clips longer than %.1f s", manifest,
                           total - len(data), total, max_duration)
    return data


