"""Helpers shared by the recipe entry points in ``recipes/`` (train, decode)."""

import io
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

    >>> split_overrides_files(["t.yaml", "--overrides_file=a.yaml", "--lr=1",
    ...                        "--overrides_file", "b.yaml"])
    (['t.yaml', '--lr=1'], ['a.yaml', 'b.yaml'])
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


def merge_repeated_overrides(argv):
    """Join repeated ``--KEY=VALUE`` options into one, where the later one wins.

    A recipe's systems pass their own ``--spec={...}`` and a user's ``--train_args`` may
    add another; given twice, SpeechBrain's parser would write the key twice into one YAML
    document, which does not load. Mappings are merged key by key (recursively), so
    ``--spec={mixture: null}`` then ``--spec={routing_selected_weight: one}`` sets both;
    any other repeated option keeps its last value. The joined option stays where the
    first one was.

    >>> merge_repeated_overrides(["t.yaml", "--spec={a: 1, b: {c: 2}}", "--lr=1",
    ...                           "--spec={b: {d: 3}}", "--lr=2"])
    ['t.yaml', '--spec={a: 1, b: {c: 2, d: 3}}', '--lr=2']
    """
    import ruamel.yaml
    from hyperpyyaml.core import recursive_update

    names = [arg[2:].split("=", 1)[0] if arg.startswith("--") and "=" in arg else None
             for arg in argv]
    repeated = {name for name in names if name and names.count(name) > 1}
    if not repeated:
        return list(argv)
    yaml = ruamel.yaml.YAML(typ="safe")
    merged, out = {}, []
    for arg, name in zip(argv, names):
        if name not in repeated:
            out.append(arg)
            continue
        value = arg.split("=", 1)[1]
        try:
            document = yaml.load(value)
        except ruamel.yaml.YAMLError:
            document = None
        if name in merged and isinstance(document, dict) and isinstance(merged[name], dict):
            recursive_update(merged[name], document)
        else:
            if name not in merged:
                out.append((name,))  # a placeholder where the first one was
            merged[name] = document if isinstance(document, dict) else value
    result = []
    for item in out:
        if isinstance(item, tuple):
            value = merged[item[0]]
            if isinstance(value, dict):
                value = _flow_yaml(value)
            result.append(f"--{item[0]}={value}")
        else:
            result.append(item)
    return result


def _flow_yaml(mapping):
    """A mapping as one line of YAML flow style (``{a: 1, b: {c: 2}}``)."""
    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    yaml.default_flow_style = True
    yaml.width = 10 ** 6
    out = io.StringIO()
    yaml.dump(mapping, out)
    return out.getvalue().strip()


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


class _NamedText(io.StringIO):
    """Text with a ``name``: HyperPyYAML resolves ``!include:`` paths next to it."""

    def __init__(self, text, name):
        super().__init__(text)
        self.name = name


def expand_extends(hparams_file):
    """A recipe YAML that starts from a shared one: ``extends: PATH``.

    HyperPyYAML's ``!include:`` places a file under one key; a recipe's
    ``conf/train.yaml`` instead takes the whole shared document (model spec, optimizer,
    checkpointer ...) and changes or adds only the dataset's own keys (epochs, durations,
    instruction pools, paper rows). ``extends`` is resolved relative to the recipe file;
    the shared file's own ``!include:`` paths stay relative to it; every key of the
    shared file remains a command-line override (``--routers=[dep]``).

    Returns
    -------
    (str, str or None, str)
        The shared file, the combined document (None when ``hparams_file`` extends
        nothing) and the recipe's own keys as an overrides document.
    """
    import ruamel.yaml
    from hyperpyyaml.core import recursive_update

    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as handle:
        try:
            own = yaml.load(handle)
        except ruamel.yaml.YAMLError:
            return hparams_file, None, ""  # reported by load_hyperpyyaml with its name
    if not isinstance(own, dict) or "extends" not in own:
        return hparams_file, None, ""
    base = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(hparams_file)),
                                         str(own.pop("extends"))))
    if not os.path.isfile(base):
        sys.exit(f"error: {hparams_file}: extends {base}, which does not exist")
    with open(base, encoding="utf-8") as handle:
        combined = yaml.load(handle)
    if isinstance(combined, dict) and "extends" in combined:
        sys.exit(f"error: {base}: a shared YAML may not itself extend another one")
    recursive_update(combined, own)
    combined_text, own_text = io.StringIO(), io.StringIO()
    yaml.dump(combined, combined_text)
    yaml.dump(own, own_text)
    return base, combined_text.getvalue(), own_text.getvalue()


def recipe_tasks(hparams_file):
    """The task names a recipe's YAML declares (its ``tasks:`` key), or None without one.

    The file is read as plain YAML after ``extends`` (:func:`expand_extends`): tags such
    as ``!new:`` are kept as text, never constructed, so nothing in the file runs. This
    lets stage 2 (``recipes/validate_data.py --tasks_from``) keep the same entries that
    training will read.

    Raises
    ------
    ValueError
        If the file is not YAML, or ``tasks`` is not a non-empty list of names.
    """
    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    try:  # a shared (extended) file that is not YAML is reported here too
        _, combined, _ = expand_extends(hparams_file)
        if combined is None:
            with open(hparams_file, encoding="utf-8") as handle:
                document = yaml.load(handle)
        else:
            document = yaml.load(combined)
    except ruamel.yaml.YAMLError as error:
        raise ValueError(f"{hparams_file} is not valid YAML: {error}") from None
    if not isinstance(document, dict) or document.get("tasks") is None:
        return None
    tasks = document["tasks"]
    if (not isinstance(tasks, list) or not tasks
            or not all(isinstance(task, str) and task.strip() for task in tasks)):
        raise ValueError(f"{hparams_file}: 'tasks' must be a non-empty list of task names, "
                         f"e.g. tasks: [asr, er]; got {tasks!r}")
    return tuple(str(task) for task in tasks)


def check_override_types(hparams_file, overrides, document=None):
    """Exit with one line if a top-level override's type differs from the YAML's value.

    ``--batch_size=abc`` on a YAML holding ``batch_size: 4`` would otherwise fail deep
    inside training with a ValueError; HyperPyYAML checks no types. Integers are accepted
    for floats; ``null`` and keys whose YAML value is tagged (``!ref`` ...) are not checked.
    ``document``: the YAML text to check against (default: the file's).
    """
    import ruamel.yaml

    if not overrides or not overrides.strip():
        return
    yaml = ruamel.yaml.YAML()
    try:
        if document is None:
            with open(hparams_file, encoding="utf-8") as handle:
                document = handle.read()
        defaults = yaml.load(document)
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


def parse_shard(text):
    """``--shard J/N`` of an entry point: ``"2/4"`` -> ``(2, 4)``; a malformed or impossible
    value ends the program with a one-line error.

    >>> parse_shard("2/4")
    (2, 4)
    """
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        sys.exit(f"error: --shard must look like 2/4, not {text!r}")
    if not 1 <= index <= count:
        sys.exit(f"error: shard {index} of {count} does not exist")
    return index, count


def load_recipe_hparams(argv):
    """Parse SpeechBrain-style arguments and load the recipe YAML.

    Besides SpeechBrain's ``--key=value`` overrides, ``--overrides_file=PATH`` (repeatable)
    applies a YAML file of overrides first (e.g.
    ``recipes/conf/paper/table5_diverse_pool.yaml``).
    A YAML with ``extends: SHARED.yaml`` is the shared file with its keys applied
    (:func:`expand_extends`).

    Returns
    -------
    hparams_file, run_opts, overrides, hparams
        For an extending YAML, ``hparams_file`` is the shared file and ``overrides`` holds
        the recipe's keys too, so that ``resolve_references(hparams_file, overrides)``
        (what SpeechBrain saves as hyperparams.yaml) is the full configuration.
    """
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    argv, override_files = split_overrides_files(argv)
    argv = merge_repeated_overrides(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if override_files:
        overrides = merge_overrides(override_files, overrides)
    if not os.path.isfile(hparams_file):
        sys.exit(f"error: hparams file not found: {hparams_file}")
    shared_file, combined, own = expand_extends(hparams_file)
    check_override_types(hparams_file, overrides, combined)
    with (open(hparams_file, encoding="utf-8") if combined is None
          else _NamedText(combined, shared_file)) as handle:
        try:
            hparams = load_hyperpyyaml(handle, overrides)
        except FileNotFoundError as error:  # a model or data folder: the message says which
            sys.exit(f"error: {error}")
        except Exception as error:  # HyperPyYAML raises many types; say which file.
            sys.exit(f"error: cannot load {hparams_file} with overrides {overrides!r}: {error}")
    if combined is not None:  # what SpeechBrain saves: the shared file + all overrides
        overrides = _merge_texts([own, overrides])
        hparams_file = shared_file
    return hparams_file, run_opts, overrides, hparams


def _merge_texts(texts):
    """One YAML overrides document from several (later ones win)."""
    import ruamel.yaml
    from hyperpyyaml.core import recursive_update

    yaml, merged = ruamel.yaml.YAML(), None
    for text in texts:
        document = yaml.load(text) if text and text.strip() else None
        if document is None:
            continue
        if merged is None:
            merged = document
        else:
            recursive_update(merged, document)
    if merged is None:
        return ""
    out = io.StringIO()
    yaml.dump(merged, out)
    return out.getvalue()


def dataset(manifest, max_duration=None, trim_seconds=None, tasks=None, feature_cache=None):
    """A dataset from ``manifest``, dropping (and counting) clips over ``max_duration``.

    With ``trim_seconds`` (the model's ``max_audio_seconds``) the clips longer than that
    are read only up to it and counted in the log: they are trimmed, not dropped.
    ``tasks``: the task names entries may use (the hparams' ``tasks``; default the
    toolkit's five). A manifest with bad entries ends the program with one line.
    ``feature_cache``: a :class:`mowe.data.precomputed_features.FeatureCache` whose features the
    examples carry as ``base_feats``.
    """
    from mowe.data import ManifestError, make_dataset, read_manifest
    from mowe.data.tasks import TASKS

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




# Generation settings of recipes/decode.py: a recipe's conf/decode.yaml (ESPnet's
# conf/decode_asr.yaml), each overridable on the command line (--beam_size=4). The
# value is (the keyword of transformers' ``generate``, its type).
DECODE_OPTIONS = {
    "beam_size": ("num_beams", int),
    "do_sample": ("do_sample", bool),
    "temperature": ("temperature", float),
    "top_k": ("top_k", int),
    "top_p": ("top_p", float),
    "repetition_penalty": ("repetition_penalty", float),
    "length_penalty": ("length_penalty", float),
    "no_repeat_ngram_size": ("no_repeat_ngram_size", int),
    "max_new_tokens": ("max_new_tokens", int),
}


def _decode_value(key, value, source):
    """``value`` as the type ``DECODE_OPTIONS`` gives ``key`` (exit with one line if not).

    >>> _decode_value("beam_size", "4", "the command line")
    4
    >>> _decode_value("do_sample", "true", "the command line")
    True
    >>> _decode_value("top_p", 0.9, "decode.yaml")
    0.9
    """
    if key not in DECODE_OPTIONS:
        sys.exit(f"error: {source}: unknown decoding option {key!r} (known: "
                 f"{', '.join(DECODE_OPTIONS)})")
    kind = DECODE_OPTIONS[key][1]
    if isinstance(value, str):
        text = value.strip()
        if kind is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            value = kind(text) if kind is not bool else None
        except ValueError:
            value = None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        sys.exit(f"error: {source}: {key} must be "
                 f"{ {int: 'a whole number', float: 'a number', bool: 'true or false'}[kind]}, "
                 f"not {value!r}")
    return value


def decode_settings(argv, defaults=None):
    """Split the decoding options off ``argv``.

    ``--decode_config=FILE`` names a YAML mapping of :data:`DECODE_OPTIONS` keys;
    ``--beam_size=4`` (any key, ``--key value`` too) overrides it. Returns the remaining
    arguments and the keyword arguments of ``generate`` (``beam_size`` becomes
    ``num_beams``), starting from ``defaults`` (same keys as the file).

    >>> rest, kwargs = decode_settings(["train.yaml", "--beam_size=4", "--seed=3"],
    ...                                {"max_new_tokens": 40})
    >>> rest, sorted(kwargs.items())
    (['train.yaml', '--seed=3'], [('max_new_tokens', 40), ('num_beams', 4)])
    """
    settings, rest, args = dict(defaults or {}), [], list(argv)
    config, given = None, {}
    while args:
        arg = args.pop(0)
        name, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name != "decode_config" and name not in DECODE_OPTIONS:
            rest.append(arg)
            continue
        if not _:
            if not args:
                sys.exit(f"error: {arg} needs a value")
            value = args.pop(0)
        if name == "decode_config":
            config = value
        else:
            given[name] = value
    if config:
        import ruamel.yaml

        if not os.path.isfile(config):
            sys.exit(f"error: decode config not found: {config}")
        with open(config, encoding="utf-8") as handle:
            document = ruamel.yaml.YAML(typ="safe").load(handle) or {}
        if not isinstance(document, dict):
            sys.exit(f"error: {config} must be a mapping of decoding options")
        for key, value in document.items():
            settings[key] = _decode_value(key, value, config)
    for key, value in given.items():
        settings[key] = _decode_value(key, value, "the command line")
    return rest, {DECODE_OPTIONS[key][0]: value for key, value in settings.items()}
