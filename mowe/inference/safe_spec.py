"""Reading a model spec that came from elsewhere as data: HyperPyYAML with an allowlist.

A HyperPyYAML file is a program: ``!new:``, ``!name:`` and ``!apply:`` call any Python
name, ``!module:`` hands out any module, ``!include:`` reads other files, and the loader
underneath (PyYAML's full loader) honours ``!!python/...`` tags, even inside the scalars
HyperPyYAML later parses as tuples. A packaged model folder (or any folder a user did not
write) must not run code when it is loaded, the way Hugging Face keeps
``trust_remote_code=False`` by default. :func:`check_spec` therefore reads the spec's YAML
*nodes* (PyYAML's ``compose``: nothing is constructed) and accepts only

* plain YAML values (strings, numbers, booleans, null, lists, mappings);
* ``!ref`` / ``!copy`` references to other keys, with the simple arithmetic HyperPyYAML
  evaluates (no ``**``: ``9**9**9`` would never finish), ``!PLACEHOLDER``, ``!tuple``;
* ``!new:`` / ``!name:`` / ``!apply:`` / ``!applyref:`` of the callables a model spec of
  this toolkit is built from (:data:`TRUSTED_CALLABLES`), and of PyTorch /
  SpeechBrain layer classes (subclasses of ``torch.nn.Module`` under
  :data:`TRUSTED_LAYER_MODULES`).

Anything else is refused with one line naming the file, the line and the tag, before any
of it is evaluated. A user who wrote their own classes opts in with
``trust_remote_code=True`` (API) / ``--trust_remote_code`` (command line).

Example
-------
>>> check_spec("model: !new:mowe.models.audio_llm.AudioLLM\\n  llm: !ref <llm>\\n", "spec.yaml")
>>> check_spec("x: !apply:os.system [touch /tmp/pwned]\\n", "spec.yaml")
Traceback (most recent call last):
...
mowe.inference.safe_spec.UntrustedSpecError: spec.yaml:1: tag !apply:os.system is not allowed in a model spec loaded from a folder: it would run os.system (trusted: the toolkit's model classes and torch/SpeechBrain layers). If you wrote this class and trust the folder, load it with trust_remote_code=True (command line: --trust_remote_code).
"""

import importlib
import re

# What the toolkit's model specs are built from (recipes/conf/model/*.yaml). Nothing here
# touches the file system beyond reading the model folders a spec names, or runs commands.
TRUSTED_CALLABLES = frozenset({
    "mowe.models.audio_llm.AudioLLM",
    "mowe.models.llm.LanguageModel",
    "mowe.models.encoders.make_encoder", "mowe.models.encoders.WhisperEncoder", "mowe.models.encoders.SSLEncoder",
    "mowe.models.encoders.SmallEncoder", "mowe.models.encoders.SpecAugment",
    "mowe.models.encoders.load_small_encoder",
    "mowe.models.mixture.MixtureOfWeakEncoders", "mowe.models.mixture.repeat", "mowe.models.mixture.FeatureAligner",
    "mowe.models.adapters.make_adapter", "mowe.models.adapters.LinearDownsampleAdapter",
    "mowe.models.adapters.ConvAdapter", "mowe.models.moe_adapter.MoEAdapter",
})
# Libraries whose nn.Module subclasses a spec may build (layers: constructing one computes
# nothing and touches nothing).
TRUSTED_LAYER_MODULES = ("torch.nn.", "speechbrain.nnet.", "speechbrain.lobes.",
                         "speechbrain.augment.")
CALLABLE_TAGS = ("!new:", "!name:", "!apply:", "!applyref:")
PLAIN_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in
              ("str", "int", "float", "bool", "null", "seq", "map", "merge")}
# a !ref / !copy value: <key[sub]> references, numbers, + - * / % // and parentheses
_REFERENCE = re.compile(r"^[\s<>\[\]\w.\-+*/%()]*$")
# HyperPyYAML's implicit !tuple resolver: a plain scalar in parentheses, later parsed with
# PyYAML's full loader (so it may not hold a tag)
_TUPLE = re.compile(r"^\(.*\)$", re.DOTALL)


class UntrustedSpecError(ValueError):
    """A spec holds a tag that would run code it is not trusted to run."""


def _refuse(origin, node, tag, why):
    raise UntrustedSpecError(
        f"{origin}:{node.start_mark.line + 1}: tag {tag} is not allowed in a model spec "
        f"loaded from a folder: {why} (trusted: the toolkit's model classes and "
        "torch/SpeechBrain layers). If you wrote this class and trust the folder, load it "
        "with trust_remote_code=True (command line: --trust_remote_code).")


def is_trusted_callable(name):
    """Whether ``!new:``/``!name:``/``!apply:`` of ``name`` is allowed without opt-in.

    The toolkit's own model parts by exact name; library layers only when ``name`` lies
    under :data:`TRUSTED_LAYER_MODULES` and is an ``nn.Module`` subclass (checked by
    importing the library module, which is installed code, never the folder's).
    """
    if name in TRUSTED_CALLABLES:
        return True
    if not name.startswith(TRUSTED_LAYER_MODULES) or not re.fullmatch(r"[\w.]+", name):
        return False
    module_name, _, attribute = name.rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        return False
    import torch

    return isinstance(value, type) and issubclass(value, torch.nn.Module)


def _check_node(node, origin, seen):
    import yaml

    if id(node) in seen:  # aliases point at nodes already checked
        return
    seen.add(id(node))
    tag = node.tag
    if tag in PLAIN_TAGS:
        if isinstance(node, yaml.ScalarNode) and tag.endswith(":str") and \
                _TUPLE.match(str(node.value)) and "!" in str(node.value):
            _refuse(origin, node, repr(node.value)[:60],
                    "a parenthesised value is parsed as a tuple by a loader that honours tags")
    elif tag in ("!ref", "!copy"):
        if not isinstance(node, yaml.ScalarNode) or not _REFERENCE.match(str(node.value)) \
                or "**" in str(node.value):
            _refuse(origin, node, f"{tag} {str(getattr(node, 'value', ''))[:40]!r}",
                    "only <key> references with + - * / arithmetic are evaluated")
    elif tag == "!PLACEHOLDER":
        pass
    elif tag == "!tuple":
        if "!" in str(getattr(node, "value", "")):
            _refuse(origin, node, tag, "a tuple is parsed by a loader that honours tags")
    elif tag.startswith(CALLABLE_TAGS):
        name = tag.split(":", 1)[1]
        if not is_trusted_callable(name):
            _refuse(origin, node, tag, f"it would run {name}")
    elif tag.startswith("!module:"):
        _refuse(origin, node, tag, "a module object gives access to everything in it")
    elif tag.startswith("!include:"):
        _refuse(origin, node, tag, "a packaged spec is self-contained; it reads no other file")
    else:
        _refuse(origin, node, tag, "unknown tag (python/* tags construct arbitrary objects)")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _check_node(key, origin, seen)
            _check_node(value, origin, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_node(item, origin, seen)


def check_spec(text, origin="hyperparams.yaml", trust_remote_code=False):
    """Refuse a spec that would run code beyond the allowlist (see the module notes).

    Arguments
    ---------
    text : str
        The YAML text.
    origin : str
        Its file, for messages.
    trust_remote_code : bool
        Skip the check (the user trusts the folder and wrote its classes).

    Raises
    ------
    UntrustedSpecError
        Naming the file, the line and the tag.
    """
    if trust_remote_code:
        return
    import yaml

    class _Composer(yaml.SafeLoader):
        """SafeLoader's parser and composer; nothing is constructed."""

    try:
        documents = list(yaml.compose_all(text, Loader=_Composer))
    except yaml.YAMLError as error:
        raise UntrustedSpecError(f"{origin}: not valid YAML: {error}") from None
    seen = set()
    for root in documents:
        if root is not None:
            _check_node(root, origin, seen)
