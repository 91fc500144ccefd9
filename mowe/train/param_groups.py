"""Learning rate (and warm-up) per module: optimizer parameter groups from the YAML.

A pretrained encoder and an adapter trained from scratch want different rates (the
paper fine-tunes its pretrained encoders at 5e-5; a new adapter learns faster at 1e-3),
as SpeechBrain's wav2vec2 recipes give the pretrained encoder its own optimiser. Here a
recipe lists groups by the names of the AudioLLM's sub-modules::

    param_groups:
        pretrained:
            modules: [base_encoder, mixture.encoders]
            lr: 5.0e-5
            warmup_steps: 50          # optional: this group's own linear warm-up
        new:
            modules: [mixture.routers, adapter, projection, llm]
            lr: 1.0e-3

A trainable parameter belongs to the group whose listed prefix is the longest one that
matches its name (``mixture.encoders.0`` beats ``mixture.encoders``); a prefix matches a
name equal to it or starting with it and a dot. Trainable parameters no group lists stay
in a ``default`` group at the optimizer's own rate. Names of the AudioLLM's parts:
``base_encoder``, ``mixture.encoders`` (``.0``, ``.1``, ...), ``mixture.aligners``,
``mixture.routers``, ``adapter``, ``projection``, ``llm`` (its trainable parameters are
the LoRA matrices), and ``pretrained_encoders``: every encoder whose weights come from a
pretrained source (Whisper, HuBERT...; not the small encoders trained from scratch), so
one recipe-wide setting gives pretrained weights a gentle rate in every system. A name
that is no part of the model is an error (a typo would otherwise train everything at the
default rate); a part that this system lacks or freezes is logged and skipped.

The learning-rate schedule multiplies every group's own rate; a group's ``warmup_steps``
adds a linear ramp over its first steps on top of the schedule (:func:`add_group_warmups`).

Example
-------
>>> import torch.nn as nn
>>> model = nn.ModuleDict({"adapter": nn.Linear(2, 2), "projection": nn.Linear(2, 3)})
>>> groups, table = build_param_groups(model, {"new": {"modules": ["adapter"], "lr": 0.01}})
>>> [(g["name"], g["lr"] if "lr" in g else None, len(g["params"])) for g in groups]
[('new', 0.01, 2), ('default', None, 2)]
"""

import logging

logger = logging.getLogger(__name__)

GROUP_KEYS = ("modules", "lr", "warmup_steps", "weight_decay")


class ParamGroupError(ValueError):
    """A ``param_groups`` entry that cannot be applied; the message says which."""


def _check_spec(spec):
    if not isinstance(spec, dict) or not spec:
        raise ParamGroupError("param_groups must map group names to {modules: [...], lr: ...}")
    for name, group in spec.items():
        if name == "default":
            raise ParamGroupError("param_groups: 'default' is the name of the parameters "
                                  "no group lists; choose another group name")
        if not isinstance(group, dict) or "modules" not in group:
            raise ParamGroupError(f"param_groups.{name} needs a 'modules' list of module "
                                  "names (e.g. [base_encoder, mixture.encoders])")
        unknown = sorted(set(group) - set(GROUP_KEYS))
        if unknown:
            raise ParamGroupError(f"param_groups.{name}: unknown keys {unknown} (allowed: "
                                  f"{list(GROUP_KEYS)})")
        modules = group["modules"]
        if isinstance(modules, str) or not modules:
            raise ParamGroupError(f"param_groups.{name}.modules must be a non-empty list")
        for key in ("lr", "weight_decay"):
            if key in group and group[key] is not None and float(group[key]) < 0:
                raise ParamGroupError(f"param_groups.{name}.{key} must be >= 0")
        warmup = group.get("warmup_steps")
        if warmup is not None and (int(warmup) != warmup or warmup < 0):
            raise ParamGroupError(f"param_groups.{name}.warmup_steps must be a whole "
                                  "number >= 0")


def _matches(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


PRETRAINED_ENCODERS = "pretrained_encoders"


def pretrained_encoder_prefixes(model):
    """Module names of the encoders whose weights come from a pretrained source (the base
    encoder and pool encoders with ``from_source``; not the small encoders trained from
    scratch): what ``modules: [pretrained_encoders]`` stands for."""
    prefixes = []
    base = getattr(model, "base_encoder", None)
    if base is not None and getattr(base, "from_source", False):
        prefixes.append("base_encoder")
    mixture = getattr(model, "mixture", None)
    for index, encoder in enumerate(getattr(mixture, "encoders", None) or []):
        if getattr(encoder, "from_source", False):
            prefixes.append(f"mixture.encoders.{index}")
    return prefixes


def _resolve(model, prefix):
    """Whether ``prefix`` names a part of the model; a part of the AudioLLM that this
    spec does not build (``mixture...`` of a baseline) counts as known but absent."""
    try:
        model.get_submodule(prefix)
        return True
    except AttributeError:
        pass
    if prefix.split(".")[0] == "mixture" and getattr(model, "mixture", "") is None:
        return False
    try:
        model.get_parameter(prefix)
        return True
    except AttributeError:
        raise ParamGroupError(
            f"param_groups: {prefix!r} names no part of the model (names: base_encoder, "
            "mixture.encoders[.N], mixture.routers, mixture.aligners, adapter, projection, "
            f"llm, or {PRETRAINED_ENCODERS})") from None


def build_param_groups(model, spec):
    """Split ``model``'s trainable parameters into optimizer groups.

    A listed module that this spec lacks (the mixture of a baseline) or that is frozen
    gives no parameters and is logged, so that one recipe-wide ``param_groups`` serves
    every system; a name that is no part of the model is an error.

    Arguments
    ---------
    model : torch.nn.Module
        The (unwrapped) AudioLLM.
    spec : dict
        ``{group name: {modules: [prefix, ...], lr, warmup_steps, weight_decay}}``;
        ``pretrained_encoders`` in ``modules`` stands for every encoder with pretrained
        weights (:func:`pretrained_encoder_prefixes`).

    Returns
    -------
    groups : list of dict
        Optimizer parameter groups (``params``, ``name``, and ``lr`` / ``weight_decay``
        where the spec sets them; ``warmup_steps`` is kept for
        :func:`add_group_warmups`). Empty groups are left out.
    table : list of tuple
        ``(group, prefixes, tensors, parameters, lr, warmup_steps)`` rows for the log.
    """
    _check_spec(spec)
    prefixes = []
    for name, group in spec.items():
        for prefix in group["modules"]:
            expanded = (pretrained_encoder_prefixes(model) if prefix == PRETRAINED_ENCODERS
                        else [prefix])
            prefixes.extend((item, name) for item in expanded if _resolve(model, item))
    members = {name: [] for name in spec}
    members["default"] = []
    used = set()
    for param_name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        matching = [(len(prefix), prefix, name) for prefix, name in prefixes
                    if _matches(param_name, prefix)]
        if matching:
            _, prefix, name = max(matching)
            used.add(prefix)
        else:
            name = "default"
        members[name].append(parameter)
    idle = sorted({prefix for prefix, _ in prefixes if prefix not in used})
    if idle:
        logger.info("param_groups: %s hold no trainable parameter here (frozen)", idle)
    groups, table = [], []
    for name, params in members.items():
        if not params:
            continue
        group = {"params": params, "name": name}
        options = spec.get(name, {})
        for key in ("lr", "weight_decay"):
            if options.get(key) is not None:
                group[key] = float(options[key])
        group["warmup_steps"] = int(options.get("warmup_steps") or 0)
        groups.append(group)
        table.append((name, sorted({p for p, n in prefixes if n == name and p in used}),
                      len(params), sum(p.numel() for p in params), group.get("lr"),
                      group["warmup_steps"]))
    return groups, table


def log_param_groups(table, default_lr):
    """One log line per group: its modules, size, rate and warm-up."""
    for name, modules, tensors, count, lr, warmup in table:
        logger.info("parameter group %-10s lr %-9.3g warm-up %4d steps  %9d parameters in "
                    "%3d tensors  (%s)", name, default_lr if lr is None else lr, warmup,
                    count, tensors, ", ".join(modules) or "everything not listed")


def add_group_warmups(scheduler, warmups):
    """Multiply the schedule of group ``i`` by ``min(1, (step + 1) / warmups[i])``.

    Arguments
    ---------
    scheduler : torch.optim.lr_scheduler.LambdaLR
        The schedule (e.g. transformers' cosine with warm-up), one lambda per group.
    warmups : list of int
        Per group, the steps of its own linear warm-up (0: none).

    Returns
    -------
    The same scheduler, its group rates recomputed for the current step.
    """
    if not any(warmups):
        return scheduler
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None or len(lambdas) != len(warmups):
        raise ParamGroupError("a group's warmup_steps needs a LambdaLR schedule with one "
                              "factor per group (transformers' get_*_schedule_with_warmup)")
    scheduler.lr_lambdas = [_ramped(base, int(steps)) if steps else base
                            for base, steps in zip(lambdas, warmups)]
    # LambdaLR set the rates for step 0 with the old factors: set them again
    for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                      scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    return scheduler


def _ramped(base, steps):
    """``base(step) * min(1, (step + 1) / steps)``. A plain function on purpose: LambdaLR's
    state dict stores nothing for functions (an object's ``__dict__`` would carry
    ``base`` into the checkpoint, which the weights-only loader of a resume refuses);
    a resumed run rebuilds the same factors from the YAML."""

    def factor(step):
        return base(step) * min(1.0, (step + 1) / steps)

    return factor
