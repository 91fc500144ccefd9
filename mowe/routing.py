"""Routers and routing losses of the Mixture of Weak Encoders (paper Eq. 2-9).

Two routers pick one weak encoder per sample:

* :class:`IndependentRouter` (Eq. 2): ``r = KeepTop1(softmax(w_indep))``, the same
  choice for every sample; ``w_indep`` starts from N(0, 1) or from a prior vector
  (the paper uses +1 for a favoured encoder and -1 otherwise).
* :class:`DependentRouter` (Eq. 4): ``r_i = KeepTop1(softmax(mean_t(z_base,i) W_dep))``.

During training the weights are smoothed as ``r = 0.9 r + 0.1 eps`` with
``eps = 0.1 / M`` (the paper applies this to the data-dependent router).
Each router returns its own loss term; :func:`mowe_loss` halves their sum, which is
Eq. 6 for the paper's indep + dep configuration.

Example
-------
>>> import torch
>>> router = DependentRouter(base_dim=4, num_encoders=3)
>>> decision = router(torch.randn(2, 5, 4), torch.tensor([5, 3]))
>>> decision.weights.shape, decision.selected.shape
(torch.Size([2, 3]), torch.Size([2]))
"""

from dataclasses import dataclass

import torch
import torch.nn as nn

ROUTER_KINDS = ("indep", "dep")


@dataclass
class RoutingDecision:
    """What one router decided for a batch.

    Attributes
    ----------
    probs : torch.Tensor
        ``[B, M]`` softmax probabilities before KeepTop1.
    weights : torch.Tensor
        ``[B, M]`` mixing weights: KeepTop1 of ``probs``, smoothed in training.
    selected : torch.Tensor
        ``[B]`` index of the encoder each sample activates (argmax).
    loss : torch.Tensor
        Scalar routing loss of this router (Eq. 7, or Eq. 8 + Eq. 9).
    loss_parts : dict
        Named scalar parts of ``loss`` for logging.
    """

    probs: torch.Tensor
    weights: torch.Tensor
    selected: torch.Tensor
    loss: torch.Tensor
    loss_parts: dict


def keep_top1(probs):
    """Zero every entry but the largest one of each row (KeepTop1, Eq. 2).

    The kept entry keeps its value, so gradient reaches the router through it.

    Arguments
    ---------
    probs : torch.Tensor
        ``[..., M]`` probabilities.

    Returns
    -------
    torch.Tensor
        Same shape, one non-zero entry per row.

    Example
    -------
    >>> keep_top1(torch.tensor([[0.2, 0.5, 0.3]]))
    tensor([[0.0000, 0.5000, 0.0000]])
    """
    index = probs.argmax(dim=-1, keepdim=True)
    mask = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return probs * mask


def smooth(weights, weight=0.1, epsilon=None):
    """Training-time smoothing ``r = (1 - weight) r + weight * eps`` (paper: 0.9 / 0.1).

    Arguments
    ---------
    weights : torch.Tensor
        ``[..., M]`` routing weights.
    weight : float
        Share of the uniform term (paper: 0.1).
    epsilon : float, optional
        Value of the uniform term; default ``0.1 / M`` as in the paper.

    Returns
    -------
    torch.Tensor
    """
    num_encoders = weights.shape[-1]
    if epsilon is None:
        epsilon = 0.1 / num_encoders
    return (1.0 - weight) * weights + weight * epsilon


def entropy_terms(weights):
    """Per-entry ``-r log r`` with ``0 log 0 = 0`` and a finite gradient at zero.

    ``torch.xlogy`` would give the right value but an infinite derivative at the
    zeros KeepTop1 leaves, which turns into NaN once multiplied by the mask; clamping
    inside the log keeps the gradient finite.
    """
    return -weights * torch.log(weights.clamp_min(1e-12))


def entropy(weights):
    """Entropy ``-sum_k r_k log r_k`` over the last axis (Eq. 7 / Eq. 8 per sample)."""
    return entropy_terms(weights).sum(dim=-1)


def diversity_loss(weights):
    """Diversity term of Eq. 9: ``sum_k rbar_k log rbar_k``, rbar the batch mean.

    Minimising it maximises the entropy of the average routing decision, which
    keeps the data-dependent router from collapsing onto one encoder.
    """
    return -entropy(weights.mean(dim=0))


class _Router(nn.Module):
    """Shared KeepTop1 + smoothing logic; subclasses provide the logits."""

    kind = None

    def __init__(self, num_encoders, smoothing=0.0, smoothing_epsilon=None):
        super().__init__()
        if num_encoders < 1:
            raise ValueError(f"a router needs at least one encoder, got {num_encoders}")
        self.num_encoders = num_encoders
        self.smoothing = smoothing
        self.smoothing_epsilon = smoothing_epsilon

    def _decide(self, logits):
        probs = torch.softmax(logits.float(), dim=-1)
        weights = keep_top1(probs)
        if self.training and self.smoothing > 0:
            weights = smooth(weights, self.smoothing, self.smoothing_epsilon)
        return probs, weights, probs.argmax(dim=-1)


class IndependentRouter(_Router):
    """Data-independent router (Eq. 2-3, loss Eq. 7).

    Arguments
    ---------
    num_encoders : int
        Pool size M.
    prior : list of float, optional
        Initial ``w_indep`` (e.g. ``[1, -1, -1, -1]`` to favour encoder 0);
        default: a standard-normal draw, as in the paper.
    smoothing : float
        Training-time smoothing share (paper: only the dependent router, so 0).
    smoothing_epsilon : float, optional
        Uniform value used by the smoothing (default ``0.1 / M``).

    Example
    -------
    >>> router = IndependentRouter(3, prior=[-1.0, 1.0, -1.0])
    >>> router(torch.zeros(2, 4, 8), torch.tensor([4, 4])).selected
    tensor([1, 1])
    """

    kind = "indep"

    def __init__(self, num_encoders, prior=None, smoothing=0.0, smoothing_epsilon=None):
        super().__init__(num_encoders, smoothing, smoothing_epsilon)
        if prior is None:
            init = torch.randn(num_encoders)
        else:
            init = torch.as_tensor(prior, dtype=torch.float32)
            if init.shape != (num_encoders,):
                raise ValueError(
                    f"w_indep prior has {init.numel()} values but the pool has "
                    f"{num_encoders} encoders"
                )
        self.w_indep = nn.Parameter(init.clone())

    def forward(self, z_base, base_lens):
        """Route a batch; ``z_base`` only provides the batch size."""
        batch_size = z_base.shape[0]
        probs, weights, selected = self._decide(self.w_indep.unsqueeze(0))
        loss = entropy(weights[0])
        return RoutingDecision(
            probs=probs.expand(batch_size, -1),
            weights=weights.expand(batch_size, -1),
            selected=selected.expand(batch_size),
            loss=loss,
            loss_parts={"indep_ent": loss.detach()},
        )


class DependentRouter(_Router):
    """Data-dependent router (Eq. 4-5, losses Eq. 8-9).

    Arguments
    ---------
    base_dim : int
        Feature size of the base encoder (d_base).
    num_encoders : int
        Pool size M.
    smoothing : float
        Training-time smoothing share (paper: 0.1).
    smoothing_epsilon : float, optional
        Uniform value used by the smoothing (default ``0.1 / M``).
    """

    kind = "dep"

    def __init__(self, base_dim, num_encoders, smoothing=0.1, smoothing_epsilon=None):
        super().__init__(num_encoders, smoothing, smoothing_epsilon)
        self.w_dep = nn.Linear(base_dim, num_encoders, bias=False)

    def forward(self, z_base, base_lens):
        """Route each sample from the time-mean of its valid base frames."""
        frames = torch.arange(z_base.shape[1], device=z_base.device)
        mask = (frames.unsqueeze(0) < base_lens.unsqueeze(1)).to(z_base.dtype)
        mean = (z_base * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        probs, weights, selected = self._decide(self.w_dep(mean.to(self.w_dep.weight.dtype)))
        ent = entropy(weights).mean()
        div = diversity_loss(weights)
        return RoutingDecision(
            probs=probs,
            weights=weights,
            selected=selected,
            loss=ent + div,
            loss_parts={"dep_ent": ent.detach(), "dep_div": div.detach()},
        )


def build_router(kind, base_dim, num_encoders, indep_prior=None, dep_smoothing=0.1,
                 smoothing_epsilon=None):
    """Make a router from its config name (``"indep"`` or ``"dep"``)."""
    if kind == "indep":
        return IndependentRouter(num_encoders, prior=indep_prior,
                                 smoothing_epsilon=smoothing_epsilon)
    if kind == "dep":
        return DependentRouter(base_dim, num_encoders, smoothing=dep_smoothing,
                               smoothing_epsilon=smoothing_epsilon)
    raise ValueError(f"unknown router kind {kind!r}; expected one of {ROUTER_KINDS}")


def mowe_loss(decisions):
    """L_MoWE = 1/2 * sum of the routers' losses (Eq. 6 for indep + dep).

    Arguments
    ---------
    decisions : list of RoutingDecision

    Returns
    -------
    loss : torch.Tensor
    parts : dict
        The routers' named parts (suffixed ``_<router index>`` when a kind repeats).
    """
    loss = 0.5 * sum(decision.loss for decision in decisions)
    parts = {}
    for index, decision in enumerate(decisions):
        for name, value in decision.loss_parts.items():
            key = name if name not in parts else f"{name}_{index}"
            parts[key] = value
    return loss, parts
