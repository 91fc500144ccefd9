"""The packaged model folder: what it holds, and the model spec taken out of a recipe run.

A packaged folder (written by ``python -m mowe pack``, read by
:class:`mowe.inference.api.AudioLLMInference`) is self-contained apart from the frozen
models it was trained on::

    hyperparams.yaml     the resolved model spec (the recipe's ``spec`` with every
                         override applied); the frozen models' folders are the keys
                         ``*_source`` and can be pointed elsewhere at load time
    model.safetensors    the trained weights: everything but the frozen LLM and base
                         encoder weights (those come from their sources)
    mowe_package.json    format version, frozen sources (path or hub id, revision, sha256
                         of their weights), decoding defaults, routers, checkpoint, scores,
                         the command that trained it
    tokenizer/           the LLM tokenizer with its chat template
    README.md            a Hugging Face model card
    routing.png          the routing plot of the recipe (when there is one)

Example
-------
>>> spec = "a_source: /m/a\\nencoder: !new:x.Y\\n  source: /m/a\\n"
>>> print(parametrize_sources(spec, ["a_source"]).strip())
a_source: /m/a
encoder: !new:x.Y
  source: !ref <a_source>
"""

import io
import json
import os

FORMAT_VERSION = 1
SPEC_FILE = "hyperparams.yaml"
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "mowe_package.json"
TOKENIZER_DIR = "tokenizer"
CARD_FILE = "README.md"
ROUTING_PLOT = "routing.png"
CACHE_KEY = "pretrained_cache"

SPEC_HEADER = """\
# MoWE AudioLLM model spec, resolved from the recipe that trained this model.
# The *_source keys name the frozen models; AudioLLMInference.from_pretrained(...,
# sources={"llm_source": DIR}) or `python -m mowe infer --source llm_source=DIR` point
# them elsewhere (their weights are checked against mowe_package.json). pretrained_cache
# is filled in at load time.
"""


def is_package(path):
    """Whether ``path`` is a packaged model folder."""
    return os.path.isfile(os.path.join(path, INFO_FILE)) and \
        os.path.isfile(os.path.join(path, WEIGHTS_FILE))


def is_experiment(path):
    """Whether ``path`` is a recipe's experiment folder of one system (trained by
    ``recipes/train.py``: ``hyperparams.yaml`` and ``save/``)."""
    return os.path.isfile(os.path.join(path, SPEC_FILE)) and \
        os.path.isdir(os.path.join(path, "save"))


def _yaml():
    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    yaml.width = 100
    return yaml


def read_experiment_yaml(exp_dir):
    """The experiment's ``hyperparams.yaml`` (as SpeechBrain saved it: every ``!ref``,
    ``!include`` and override resolved), loaded with tags kept."""
    with open(os.path.join(exp_dir, SPEC_FILE), encoding="utf-8") as handle:
        return _yaml().load(handle)


def source_keys(spec):
    """Top-level keys naming a frozen model (``*_source`` holding a string)."""
    return [key for key, value in spec.items()
            if key.endswith("_source") and isinstance(value, str) and value]


def _walk_replace(node, values):
    """Replace string leaves equal to a value of ``values`` by ``!ref <key>``."""
    from ruamel.yaml.comments import TaggedScalar

    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in list(items):
        if isinstance(value, str) and not isinstance(value, TaggedScalar) and value in values:
            node[key] = TaggedScalar(value=f"<{values[value]}>", tag="!ref")
        else:
            _walk_replace(value, values)


def parametrize_sources(spec_text, keys):
    """Turn the copies of the ``keys``' values inside the spec into ``!ref <key>``.

    SpeechBrain's saved ``hyperparams.yaml`` has its references resolved: the folder of a
    frozen model appears both as ``llm_source`` and inside ``llm: !new:...``. With the
    copies turned back into references, overriding ``llm_source`` at load time moves
    the model to another folder.
    """
    yaml = _yaml()
    spec = yaml.load(spec_text)
    values = {spec[key]: key for key in keys if isinstance(spec.get(key), str)}
    for top_key, value in list(spec.items()):
        if top_key not in keys:
            _walk_replace(value, values)
    out = io.StringIO()
    yaml.dump(spec, out)
    return out.getvalue()


def spec_from_experiment(exp_dir):
    """The model spec of an experiment folder, ready to load with overrides.

    Returns
    -------
    spec_text : str
        YAML of the ``spec`` mapping, sources and ``pretrained_cache`` as references.
    top : dict
        The experiment's top-level plain values (``max_new_tokens``, ``max_duration``,
        ``batch_size``, ...).
    """
    document = read_experiment_yaml(exp_dir)
    if "spec" not in document or not isinstance(document["spec"], dict):
        raise ValueError(f"{exp_dir}/{SPEC_FILE} has no `spec` mapping: not an AudioLLM "
                         "recipe run (recipes/train.py with a spec: !include of the model YAML)")
    spec = document["spec"]
    out = io.StringIO()
    _yaml().dump(spec, out)
    keys = source_keys(spec) + ([CACHE_KEY] if isinstance(spec.get(CACHE_KEY), str) else [])
    top = {key: value for key, value in document.items()
           if isinstance(value, (int, float, str, bool)) or value is None}
    return SPEC_HEADER + parametrize_sources(out.getvalue(), keys), top


def relative_source(record, package_dir):
    """``record`` (:func:`mowe.provision.model_sources.fingerprint_source`) with a local source written
    relative to the package folder (a hub id is kept), and its folder name as ``name``."""
    record = dict(record)
    if record.get("kind") == "local":
        absolute = os.path.abspath(os.path.expanduser(record["source"]))
        record["name"] = os.path.basename(os.path.normpath(absolute))
        record["source"] = os.path.relpath(absolute, os.path.abspath(package_dir))
    return record


def relative_spec_sources(spec_text, sources):
    """The spec with each recorded ``*_source`` key's value set to the record's (relative)
    source and ``pretrained_cache`` emptied (filled in at load time)."""
    document = _yaml().load(spec_text)
    for key, record in sources.items():
        if key in document:
            document[key] = record["source"]
    if isinstance(document.get(CACHE_KEY), str):
        document[CACHE_KEY] = ""
    out = io.StringIO()
    _yaml().dump(document, out)
    return out.getvalue()


PRETRAINED_DIR_ENV = "MOWE_PRETRAINED_DIR"


def locate_source(record, package_dir):
    """Where a package's frozen model is on this machine: a relative local source is
    taken from the package folder; if it is not there, ``$MOWE_PRETRAINED_DIR/<name>``.
    Absolute paths (packages of earlier versions) and hub ids are returned as they are."""
    source = record.get("source", "")
    if record.get("kind") != "local" or os.path.isabs(source):
        return source
    candidate = os.path.normpath(os.path.join(package_dir, source))
    fallback = os.environ.get(PRETRAINED_DIR_ENV)
    if not os.path.isdir(candidate) and fallback and record.get("name"):
        other = os.path.join(fallback, record["name"])
        if os.path.isdir(other):
            return other
    return candidate


def load_spec(spec_text, overrides, origin=SPEC_FILE, trust_remote_code=False):
    """Build the objects of a spec (HyperPyYAML) with ``overrides`` (a dict).

    The spec is checked first (:func:`mowe.inference.safe_spec.check_spec`): a tag that would run
    code beyond the toolkit's model classes and torch/SpeechBrain layers is refused,
    naming ``origin``, its line and the tag, unless ``trust_remote_code``."""
    from hyperpyyaml import load_hyperpyyaml

    from mowe.inference.safe_spec import check_spec

    check_spec(spec_text, origin, trust_remote_code)
    return load_hyperpyyaml(spec_text, overrides)


def read_info(folder):
    """``mowe_package.json`` of a packaged folder, checking its format version."""
    with open(os.path.join(folder, INFO_FILE), encoding="utf-8") as handle:
        info = json.load(handle)
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{folder} is a MoWE package of format {version}; this toolkit "
                         f"reads format {FORMAT_VERSION} (upgrade the toolkit)")
    return info


def write_json(path, payload):
    """Write JSON atomically (temporary file, then rename)."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(partial, path)
