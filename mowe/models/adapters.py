"""Adapters: downsample the concatenated encoder features into audio tokens.

Both take ``(feats [B, T, D], lens [B])`` and return ``(tokens [B, N, H], token_lens)``;
the AudioLLM then projects ``H`` to the LLM width (``proj(adapter(z))`` in the paper).

* :class:`LinearDownsampleAdapter` — Linear + GELU to a fixed number of tokens
  (paper Sec. IV-B: 100 tokens).
* :class:`ConvAdapter` — Conv1D with kernel = stride = 8 (paper Sec. V-C).

In YAML both are given as ``!name:`` partials: the AudioLLM supplies ``input_dim``,
which depends on the base encoder and the mixture.

Example
-------
>>> import torch
>>> adapter = LinearDownsampleAdapter(input_dim=6, output_dim=4, num_tokens=5)
>>> tokens, lens = adapter(torch.randn(2, 40, 6), torch.tensor([40, 17]))
>>> tokens.shape, lens.tolist()
(torch.Size([2, 5, 4]), [5, 5])
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.models.mixture import align_time


class LinearDownsampleAdapter(nn.Module):
    """Linear + GELU downsampling to ``num_tokens`` audio tokens.

    Each clip's ``lens`` frames are resampled (linear interpolation) to
    ``num_tokens * frames_per_token`` frames, each group of ``frames_per_token``
    consecutive frames is stacked, and Linear + GELU maps the stack to one token.
    In the paper's 30 s mode the AudioLLM passes all 1500 Whisper frames, valid and
    padding (``lens`` = 1500): with 100 tokens of 15 frames nothing is resampled and
    this is the plain "stack 15 frames + Linear + GELU" adapter. With unpadded encoding
    only a clip's valid frames are passed and they *are* resampled: a 5 s clip's 250
    frames are stretched 6x to 1500.

    Arguments
    ---------
    input_dim : int
        Feature size D of the encoder features.
    output_dim : int
        Token size H.
    num_tokens : int
        Audio tokens per clip (paper: 100).
    frames_per_token : int
        Frames stacked into one token.
    """

    def __init__(self, input_dim, output_dim=512, num_tokens=100, frames_per_token=15):
        super().__init__()
        self.num_tokens = int(num_tokens)
        self.frames_per_token = int(frames_per_token)
        self.output_dim = output_dim
        self.linear = nn.Linear(input_dim * self.frames_per_token, output_dim)

    def forward(self, feats, lens):
        batch = feats.shape[0]
        frames = self.num_tokens * self.frames_per_token
        target = torch.full_like(lens, frames)
        resampled = align_time(feats, lens, target, frames)
        stacked = resampled.reshape(batch, self.num_tokens, -1)
        return F.gelu(self.linear(stacked)), target.new_full((batch,), self.num_tokens)


class ConvAdapter(nn.Module):
    """Conv1D downsampling with kernel = stride (paper Sec. V-C: 8), then GELU.

    A clip of ``n`` valid frames gives ``ceil(n / stride)`` tokens; frames past its end
    are zeroed first so a clip's tokens do not depend on its batch-mates.

    Arguments
    ---------
    input_dim : int
        Feature size D.
    output_dim : int
        Token size H.
    stride : int
        Kernel size and stride.
    """

    def __init__(self, input_dim, output_dim=512, stride=8):
        super().__init__()
        self.stride = int(stride)
        self.output_dim = output_dim
        self.conv = nn.Conv1d(input_dim, output_dim, kernel_size=self.stride,
                              stride=self.stride)

    def forward(self, feats, lens):
        frames = feats.shape[1]
        valid = torch.arange(frames, device=feats.device).unsqueeze(0) < lens.unsqueeze(1)
        feats = feats * valid.unsqueeze(-1).to(feats.dtype)
        padded = -(-frames // self.stride) * self.stride
        feats = F.pad(feats, (0, 0, 0, padded - frames))
        tokens = F.gelu(self.conv(feats.transpose(1, 2))).transpose(1, 2)
        token_lens = torch.div(lens + self.stride - 1, self.stride, rounding_mode="floor")
        return tokens, token_lens.clamp_min(1)


ADAPTER_KINDS = ("linear", "conv", "moe")


def make_adapter(input_dim, kind="linear", output_dim=512, num_tokens=100,
                 frames_per_token=15, stride=8, num_routed_experts=4, num_shared_experts=1,
                 moe_top_k=1, expert_hidden_dim=None):
    """Build the adapter named by ``kind`` from the settings it uses.

    Lets a YAML spec switch adapters with one plain key (``adapter_kind: conv``);
    HyperPyYAML cannot swap a node's class through an override.

    Parameters
    ----------
    input_dim : int
        Feature size D.
    kind : str
        ``linear`` (:class:`LinearDownsampleAdapter`), ``conv`` (:class:`ConvAdapter`)
        or ``moe`` (:class:`mowe.models.moe_adapter.MoEAdapter`).
    output_dim : int
    num_tokens, frames_per_token : int
        Used by ``linear`` and ``moe``.
    stride : int
        Used by ``conv``.
    num_routed_experts, num_shared_experts, moe_top_k, expert_hidden_dim : int
        Used by ``moe`` (``expert_hidden_dim`` None: matched to the linear adapter's
        parameters per token).
    """
    if kind == "linear":
        return LinearDownsampleAdapter(input_dim, output_dim, num_tokens, frames_per_token)
    if kind == "conv":
        return ConvAdapter(input_dim, output_dim, stride)
    if kind == "moe":
        from mowe.models.moe_adapter import MoEAdapter

        return MoEAdapter(input_dim, output_dim, num_tokens, frames_per_token,
                          num_routed_experts, num_shared_experts, moe_top_k,
                          expert_hidden_dim)
    raise ValueError(f"unknown adapter_kind {kind!r}; choose one of {list(ADAPTER_KINDS)}")
