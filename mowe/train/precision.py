"""The frozen LLM's weights in training: ``auto`` = bfloat16 where the hardware
multiplies it natively.

The frozen LLM is most of a training step's matrix products. Held in bfloat16 while
training (LoRA adapters and everything else trainable stay float32), those products run
on the CPU's bf16 units (Intel AMX, AVX512-BF16) or a GPU's tensor cores: the default
recipe's CPU training step takes less time than the float32 step
(``bench/run_all.py``: ``bf16_llm_over_fp32_llm_step``; the figures are in
bench/RESULTS.md). On a CPU without native bf16,
oneDNN emulates it and a step gets slower, so ``auto`` leaves the weights as built there.

Decoding rebuilds the model as its spec says (``llm_dtype``, float32 by default): in
float32 a batch's greedy answers equal one-by-one decoding, where in bfloat16 some of
them differed (the same bench, ``decode_identical``).

Example
-------
>>> training_llm_dtype("bf16")
torch.bfloat16
>>> training_llm_dtype(None) is None
True
>>> training_llm_dtype("auto", flags={"avx2", "amx_bf16"})
torch.bfloat16
>>> training_llm_dtype("auto", flags={"avx2", "fma"}) is None
True
"""

import functools
import platform

import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")
# SpeechBrain's --precision spellings
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# /proc/cpuinfo flags of CPUs whose matrix units multiply bf16 natively: x86 (AMX,
# AVX512-BF16) and Arm ("bf16" in the Features line)
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags from ``path`` (empty where there is no such file)."""
    flags = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    flags.update(value.split())
    except OSError:  # not Linux: no flags known, so ``auto`` leaves the CPU's dtype be
        pass
    return frozenset(flags)


def native_bf16_reason(on_gpu=False, flags=None, cuda_bf16=None):
    """Why the device a job runs on multiplies bf16 natively (a short text), or ``None``.

    Parameters
    ----------
    on_gpu : bool
        The job runs on a CUDA GPU (else on the CPU).
    flags : set of str, optional
        CPU flags (default: :func:`cpu_flags`).
    cuda_bf16 : bool, optional
        Whether the GPU has bf16 (default: asked of torch).
    """
    if on_gpu:
        if cuda_bf16 is None:  # not emulated bf16 (V100, T4: slower than float32)
            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(
                including_emulation=False)
        return "the GPU supports bf16" if cuda_bf16 else None
    flags = cpu_flags() if flags is None else flags
    native = [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags]
    if native:
        return f"the CPU ({platform.machine()}) has {', '.join(native)}"
    return None


def training_llm_dtype(setting, on_gpu=False, built=torch.float32, flags=None,
                       cuda_bf16=None):
    """The dtype the frozen LLM weights train in, for a recipe's ``train_llm_dtype``.

    Parameters
    ----------
    setting : str or None
        ``auto`` (bfloat16 where :func:`native_bf16_reason` finds native bf16 and the
        weights were built in float32, else as built), ``float32``, ``bfloat16``,
        ``float16`` (or ``fp32``, ``bf16``, ``fp16``), or ``None`` (as built).
    on_gpu : bool
        Training runs on CUDA GPUs (else on the CPU).
    built : torch.dtype
        The dtype the model spec built the frozen weights in: ``auto`` changes only
        float32 (a float16 spec is not rounded into bf16's shorter mantissa).
    flags, cuda_bf16
        Passed to :func:`native_bf16_reason` (defaults: this machine).

    Returns
    -------
    torch.dtype or None
        ``None``: leave the weights as the model spec built them.

    Raises
    ------
    ValueError
        For a setting not listed above.
    """
    if setting is None:
        return None
    setting = ALIASES.get(setting, setting)
    if setting not in DTYPES:
        raise ValueError(f"train_llm_dtype {setting!r} is not one of {', '.join(DTYPES)} "
                         "or null")
    if setting != "auto":
        return getattr(torch, setting)
    if built != torch.float32 or native_bf16_reason(on_gpu, flags, cuda_bf16) is None:
        return None
    return torch.bfloat16


def cast_frozen_parameters(module, dtype):
    """Cast ``module``'s frozen floating-point parameters to ``dtype`` in place; trainable
    ones (LoRA adapters) and buffers stay as they are.

    Returns
    -------
    int
        How many parameters were cast.

    Example
    -------
    >>> layer = torch.nn.Linear(2, 2)
    >>> _ = layer.bias.requires_grad_(False)
    >>> cast_frozen_parameters(layer, torch.bfloat16), layer.weight.dtype, layer.bias.dtype
    (1, torch.float32, torch.bfloat16)
    """
    cast = 0
    for parameter in module.parameters():
        if not parameter.requires_grad and parameter.is_floating_point() \
                and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
            cast += 1
    return cast
