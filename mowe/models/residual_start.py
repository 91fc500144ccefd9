"""A residual start for MoWE: the model starts as its base-only baseline.

With ``mowe_feature_init: zero`` (:class:`mowe.models.audio_llm.AudioLLM`) the
adapter's weights on ``z_MoWE`` start at zero and everything the baseline also has
(the adapter's weights on ``z_base``, its bias, the projection) is drawn exactly as the
baseline's is for the same seed: the weak encoders enter the model as training finds
them useful, as LoRA's zero ``B`` or ControlNet's zero convolutions do.

Example
-------
>>> import torch
>>> from mowe.models.adapters import LinearDownsampleAdapter
>>> reference = LinearDownsampleAdapter(input_dim=3, output_dim=4, num_tokens=2)
>>> wide = LinearDownsampleAdapter(input_dim=5, output_dim=4, num_tokens=2)
>>> start_as_base_only(wide, reference, base_dim=3, input_dim=5)
1
>>> feats, lens = torch.randn(1, 30, 5), torch.tensor([30])
>>> torch.allclose(wide(feats, lens)[0], reference(feats[..., :3], lens)[0], atol=1e-6)
True
"""

import torch
import torch.nn as nn


def build_as_baseline(mixture, adapter, base_dim):
    """Build the mixture and the adapter so that the model starts as its baseline.

    The mixture draws from a stream of its own (seeded from the global seed), the
    adapter is built once for ``z_base`` alone with the global stream (the baseline's
    draws) and once, aside, for the whole concatenation, which then takes the first's
    weights on ``z_base`` and zeros on ``z_MoWE``. Whatever is built after (the
    projection) gets the baseline's draws too.

    Parameters
    ----------
    mixture : callable or nn.Module
        The MoWE, or a factory taking ``base_dim``.
    adapter : callable or nn.Module
        The adapter, or a factory taking ``input_dim``.
    base_dim : int
        The base encoder's feature size.

    Returns
    -------
    tuple of nn.Module
        The mixture and the adapter.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((torch.initial_seed() + 1) % 2 ** 63)
        mixture = mixture if isinstance(mixture, nn.Module) else mixture(base_dim=base_dim)
    input_dim = base_dim + mixture.output_dim
    if isinstance(adapter, nn.Module):
        start_as_base_only(adapter, None, base_dim, input_dim)
        return mixture, adapter
    reference = adapter(input_dim=base_dim)
    with torch.random.fork_rng(devices=[]):
        wide = adapter(input_dim=input_dim)
    start_as_base_only(wide, reference, base_dim, input_dim)
    return mixture, wide


def start_as_base_only(adapter, reference, base_dim, input_dim):
    """Make ``adapter`` (reading ``[z_base ; z_MoWE]``) start as ``reference`` (reading
    ``z_base`` alone): a residual start for the weak encoders.

    Every layer that reads the concatenated features (the linear adapter's ``linear``,
    the conv adapter's ``conv``, the MoE adapter's gate and first expert layers) gets
    zero weights on the ``z_MoWE`` channels; where the reference has the same layer with
    the base-only shape, its weights on the ``z_base`` channels and its bias are copied.
    Written by hand because the columns of one input block must be found inside
    ``frames_per_token`` stacked frames, which no library initialiser knows about.

    Parameters
    ----------
    adapter : nn.Module
        The adapter built for ``input_dim`` features; changed in place.
    reference : nn.Module or None
        The same adapter built for ``base_dim`` features (None: only zero).
    base_dim, input_dim : int
        Sizes of ``z_base`` and of ``[z_base ; z_MoWE]``.

    Returns
    -------
    int
        The number of layers whose ``z_MoWE`` weights were zeroed.
    """
    stacked = getattr(adapter, "frames_per_token", 1)
    references = dict(reference.named_modules()) if reference is not None else {}
    zeroed = 0
    with torch.no_grad():
        for name, layer in adapter.named_modules():
            if isinstance(layer, nn.Linear) and layer.in_features == stacked * input_dim:
                weight = layer.weight.view(layer.out_features, stacked, input_dim)
            elif isinstance(layer, nn.Conv1d) and layer.in_channels == input_dim:
                weight = layer.weight.transpose(1, 2)      # [out, kernel, in]
            else:
                continue
            weight[..., base_dim:] = 0
            zeroed += 1
            twin = references.get(name)
            if twin is None or type(twin) is not type(layer):
                continue
            twin_weight = (twin.weight.view(twin.weight.shape[0], stacked, base_dim)
                           if isinstance(twin, nn.Linear) else twin.weight.transpose(1, 2))
            if twin_weight.shape == weight[..., :base_dim].shape:
                weight[..., :base_dim] = twin_weight
                if layer.bias is not None:
                    layer.bias.copy_(twin.bias)
    return zeroed
