"""MoE-Adapter: a token-level sparse mixture-of-experts adapter (after arXiv 2601.02967).

The frames are grouped into tokens exactly as in
:class:`~mowe.models.adapters.LinearDownsampleAdapter` (resampled to ``num_tokens x
frames_per_token`` frames, each group stacked); then, per token, a softmax gate picks
its ``top_k`` routed experts, ``num_shared_experts`` experts see every token, and the
token is the sum of the shared experts' outputs and the routed experts' outputs weighted
by their gate probabilities. Each expert is Linear -> GELU -> Linear.

Execution is sparse and dropless: tokens are grouped by expert and each expert runs
once on exactly the tokens routed to it (no capacity limit, no dropped token), like the
weak-encoder dispatch of :mod:`mowe.models.mixture`.

The load-balancing loss is the Switch Transformer's,
``L_balance = E * sum_e f_e * P_e`` with ``f_e`` the share of routing slots given to
expert ``e`` and ``P_e`` its mean gate probability over the tokens (1.0 when balanced,
up to ``E`` when collapsed); the Brain adds ``moe_balance_weight * L_balance`` to the
objective and logs it next to ``L_MoWE``.

Sizes: by default the expert hidden size is chosen so that the parameters a token
uses (``top_k + num_shared_experts`` experts, plus the gate) are about those of the
linear adapter's single ``Linear(D * frames_per_token, H)``: comparisons run at
comparable compute. :func:`parameter_counts` reports active and total counts.

Example
-------
>>> import torch
>>> adapter = MoEAdapter(input_dim=6, output_dim=4, num_tokens=5, frames_per_token=2,
...                      num_routed_experts=4, num_shared_experts=1, top_k=1)
>>> tokens, lens, aux = adapter(torch.randn(2, 40, 6), torch.tensor([40, 17]))
>>> tokens.shape, lens.tolist(), aux["expert_counts"].shape
(torch.Size([2, 5, 4]), [5, 5], torch.Size([2, 4]))
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.models.mixture import align_time


class ExpertMLP(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def matched_hidden_dim(input_dim, output_dim, active_experts):
    """Hidden size giving ``active_experts`` experts about the parameters of one
    ``Linear(input_dim, output_dim)``: ``a (d h + h + h o + o) ~ d o + o``."""
    target = input_dim * output_dim + output_dim
    per_hidden = active_experts * (input_dim + 1 + output_dim)
    return max(1, round((target - active_experts * output_dim) / per_hidden))


def switch_balance_loss(probs, chosen, num_experts):
    """Switch-Transformer load-balancing loss ``E * sum_e f_e P_e``.

    Arguments
    ---------
    probs : torch.Tensor
        ``[tokens, E]`` gate softmax.
    chosen : torch.Tensor
        ``[tokens, k]`` experts each token was routed to.
    num_experts : int

    Example
    -------
    >>> probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    >>> float(switch_balance_loss(probs, torch.tensor([[0], [1]]), 2))
    1.0
    """
    slots = F.one_hot(chosen, num_experts).to(probs.dtype).sum(dim=1)  # [tokens, E]
    fraction = slots.sum(dim=0) / slots.sum()
    mean_prob = probs.mean(dim=0)
    return num_experts * (fraction * mean_prob).sum()


class MoEAdapter(nn.Module):
    """Token-level sparse MoE adapter with shared experts.

    Arguments
    ---------
    input_dim : int
        Feature size D of the encoder features.
    output_dim : int
        Token size H.
    num_tokens, frames_per_token : int
        Frame grouping, as in the linear adapter.
    num_routed_experts : int
        Experts chosen by the gate.
    num_shared_experts : int
        Experts applied to every token.
    top_k : int
        Routed experts per token.
    expert_hidden_dim : int, optional
        Hidden size of every expert; by default matched to the linear adapter's
        parameters per token (:func:`matched_hidden_dim`).
    """

    returns_aux = True  # forward gives (tokens, lens, aux); the AudioLLM unpacks it

    def __init__(self, input_dim, output_dim=512, num_tokens=100, frames_per_token=15,
                 num_routed_experts=4, num_shared_experts=1, top_k=1,
                 expert_hidden_dim=None):
        super().__init__()
        if not 1 <= top_k <= num_routed_experts:
            raise ValueError(f"top_k must be between 1 and num_routed_experts "
                             f"({num_routed_experts}), not {top_k}")
        self.num_tokens = int(num_tokens)
        self.frames_per_token = int(frames_per_token)
        self.output_dim = output_dim
        self.top_k = int(top_k)
        self.num_routed_experts = int(num_routed_experts)
        token_dim = input_dim * self.frames_per_token
        hidden = expert_hidden_dim or matched_hidden_dim(
            token_dim, output_dim, self.top_k + num_shared_experts)
        self.gate = nn.Linear(token_dim, self.num_routed_experts)
        self.routed = nn.ModuleList(ExpertMLP(token_dim, hidden, output_dim)
                                    for _ in range(self.num_routed_experts))
        self.shared = nn.ModuleList(ExpertMLP(token_dim, hidden, output_dim)
                                    for _ in range(num_shared_experts))

    def group_frames(self, feats, lens):
        """``[B, T, D]`` -> ``[B, N, D * frames_per_token]`` as the linear adapter."""
        frames = self.num_tokens * self.frames_per_token
        target = torch.full_like(lens, frames)
        resampled = align_time(feats, lens, target, frames)
        return resampled.reshape(feats.shape[0], self.num_tokens, -1)

    def route(self, tokens):
        """Gate softmax ``[n, E]``, chosen experts ``[n, k]`` and their weights."""
        probs = torch.softmax(self.gate(tokens).float(), dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        return probs, chosen, weights.to(tokens.dtype)

    def forward(self, feats, lens):
        batch = feats.shape[0]
        grouped = self.group_frames(feats, lens)
        flat = grouped.reshape(-1, grouped.shape[-1])
        probs, chosen, weights = self.route(flat)
        out = flat.new_zeros(flat.shape[0], self.output_dim)
        for expert in self.shared:
            out = out + expert(flat)
        for index, expert in enumerate(self.routed):
            rows, slot = (chosen == index).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue  # an idle expert does no work at all
            contribution = expert(flat[rows]) * weights[rows, slot].unsqueeze(-1)
            out = out.index_add(0, rows, contribution)
        counts = F.one_hot(chosen, self.num_routed_experts).sum(dim=1)  # [n, E]
        aux = {"balance_loss": switch_balance_loss(probs, chosen, self.num_routed_experts),
               "expert_counts": counts.reshape(batch, self.num_tokens, -1).sum(dim=1)}
        tokens = out.reshape(batch, self.num_tokens, self.output_dim)
        return tokens, lens.new_full((batch,), self.num_tokens), aux

    def dense_reference(self, feats, lens):
        """Every routed expert on every token, masked by the routing: the computation
        the sparse dispatch must equal (for tests)."""
        grouped = self.group_frames(feats, lens)
        flat = grouped.reshape(-1, grouped.shape[-1])
        probs, chosen, weights = self.route(flat)
        mask = torch.zeros_like(probs, dtype=flat.dtype).scatter(1, chosen, weights)
        out = sum(expert(flat) for expert in self.shared) if len(self.shared) else 0
        for index, expert in enumerate(self.routed):
            out = out + expert(flat) * mask[:, index:index + 1]
        return out.reshape(feats.shape[0], self.num_tokens, self.output_dim)

    def shared_parameters(self):
        """Parameters every token's gradient reaches: the gate and the shared experts."""
        return list(self.gate.parameters()) + [p for e in self.shared for p in e.parameters()]


def parameter_counts(adapter):
    """``(active per token, total)`` parameter counts of an adapter.

    For the MoE adapter, active = gate + shared experts + ``top_k`` routed experts;
    for the dense adapters every parameter is active.

    Example
    -------
    >>> from mowe.models.adapters import LinearDownsampleAdapter
    >>> parameter_counts(LinearDownsampleAdapter(4, 3, num_tokens=2, frames_per_token=2))
    (27, 27)
    """
    total = sum(p.numel() for p in adapter.parameters())
    if not isinstance(adapter, MoEAdapter):
        return total, total
    expert = sum(p.numel() for p in adapter.routed[0].parameters())
    active = (sum(p.numel() for p in adapter.shared_parameters())
              + adapter.top_k * expert)
    return active, total
