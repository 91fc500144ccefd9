"""Dropout whose mask costs a quarter of the random draws on the CPU.

On the CPU, ``torch.nn.functional.dropout`` draws one Mersenne-Twister number per
element, and on the default recipe's model those draws are the largest cost after the
matrix products: peft's LoRA dropout runs twice in each of SmolLM2's 30 layers (q and
v). :class:`QuarterDrawDropout` draws one 64-bit integer per four elements and compares
each 16-bit quarter with a threshold instead, a fraction of the time (the profile and
``recipe_step_over_plain_step``: bench/RESULTS.md). It is written by hand because torch
offers no cheaper CPU dropout.

The drop probability is ``p`` rounded to a multiple of 1/65536 (0.05 becomes
0.0500031), kept values are scaled by the inverse of the exact keep probability, so
the output is unbiased as with ``nn.Dropout``. On other devices (a GPU's Philox
dropout is already cheap), in eval mode, and for ``p`` of 0 or 1 it is ``nn.Dropout``.

Example
-------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> dropout = QuarterDrawDropout(0.25).train()
>>> out = dropout(torch.ones(100000))
>>> round(float((out == 0).float().mean()), 2), round(float(out.mean()), 2)
(0.25, 1.0)
>>> bool(torch.equal(dropout.eval()(torch.ones(3)), torch.ones(3)))
True
"""

import torch
import torch.nn as nn

_LEVELS = 1 << 16  # values of one 16-bit quarter of a draw


class QuarterDrawDropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU (see the module docstring).

    Arguments
    ---------
    p : float
        Drop probability (rounded to a multiple of 1/65536 on the CPU).
    """

    def __init__(self, p=0.5):
        super().__init__(p=p)
        self._dropped_levels = round(p * _LEVELS)

    def forward(self, x):
        """Drop elements of ``x`` with probability ``p`` and rescale the others."""
        if (not self.training or x.device.type != "cpu" or x.numel() == 0
                or not 0 < self._dropped_levels < _LEVELS):
            return super().forward(x)
        count = x.numel()
        draws = torch.randint(-(1 << 63), (1 << 63) - 1, ((count + 3) // 4,),
                              dtype=torch.int64, device=x.device)
        quarters = draws.view(torch.int16)[:count].view(x.shape)  # uniform in [-2^15, 2^15)
        keep = quarters >= (self._dropped_levels - (1 << 15))
        scale = _LEVELS / (_LEVELS - self._dropped_levels)
        return x * keep.to(x.dtype) * scale


def lora_dropout_slots(module):
    """Yield ``(container, adapter_name, dropout)`` for every dropout module in peft's
    ``lora_dropout`` containers of ``module`` (a list: safe to replace while iterating)."""
    slots = []
    for name, child in module.named_modules():
        if name.endswith("lora_dropout") and isinstance(child, nn.ModuleDict):
            slots += [(child, key, dropout) for key, dropout in child.items()]
    return slots


def use_quarter_draw_dropout(module):
    """Replace every ``nn.Dropout`` inside peft's ``lora_dropout`` containers of
    ``module`` by :class:`QuarterDrawDropout` of the same ``p``; returns the count.

    Arguments
    ---------
    module : torch.nn.Module
        A model with peft LoRA layers (others are left alone).

    Returns
    -------
    int
        The number of dropout modules replaced.
    """
    replaced = 0
    for container, key, dropout in lora_dropout_slots(module):
        if type(dropout) is nn.Dropout:
            container[key] = QuarterDrawDropout(dropout.p)
            replaced += 1
    return replaced
