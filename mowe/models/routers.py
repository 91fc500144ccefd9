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

Choices the equations leave open, as options (defaults: the paper, literally):

* ``entropy_on``: Eq. 7/8 take the entropy of ``r``, the KeepTop1 weights
  (``"weights"``). With one non-zero entry ``p``, minimising ``-p log p`` raises ``p``
  only when ``p > 1/e``: a router whose top probability is below 1/e is pushed towards
  *less* confidence. ``"probs"`` takes the entropy of the full softmax instead, which
  always pushes towards a confident choice.
* ``diversity_batch``: Eq. 9's ``rbar`` is a batch mean. ``"global"`` (default) takes it
  over the samples of every DDP process (a differentiable all-gather), so 4 processes x
  8 clips give the paper's batch of 32; ``"local"`` over one process's micro-batch.
  Gradient accumulation splits the batch into micro-batches, and ``rbar`` is then the
  mean over each micro-batch (of all processes), not over the accumulated batch.
* ``selected_weight``: KeepTop1 keeps the selected encoder's probability ``p`` as its
  mixing weight (``"probability"``, the paper), so its features enter scaled by ``p``
  (about 0.3-0.75 with 4 encoders) and the scale moves as the router learns.
  ``"one"`` mixes the selected encoder's features at weight 1 in the forward pass and
  passes the gradient to ``p`` as if the weight were ``p`` (straight-through), so the
  router still learns from the next-token loss; the routing losses are computed on the
  paper's weights either way. Not the paper's: an option for the diagnosis, where it did
  worse than the paper's mixing over three seeds (``egs/synthetic/RESULTS.md``).
* ``reduction`` of :func:`mowe_loss`: ``"half_sum"`` (Eq. 6's 1/2 for any router set,
  so a single router's loss is halved) or ``"mean"`` (the mean over the routers: equal
  to Eq. 6 for two routers, the full loss for one).

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
    mixing : torch.Tensor, optional
        ``[B, M]`` the weights the features are mixed with: ``weights``, or 1 on the
        selected encoder (straight-through) with ``selected_weight="one"``.
    """

    probs: torch.Tensor
    weights: torch.Tensor
    selected: torch.Tensor
    loss: torch.Tensor
    loss_parts: dict
    mixing: torch.Tensor = None

    def __post_init__(self):
        if self.mixing is None:
            self.mixing = self.weights


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


class _GatherRows(torch.autograd.Function):
    """All-gather of ``[n, M]`` rows (padded to one length) that passes gradients back.

    Backward: every process's loss depends on every process's rows, so the gradient of
    a process's rows is the sum over processes of their losses' gradients (all-reduce),
    sliced to its own rows. DDP then averages the parameter gradients, which gives the
    gradient of the loss computed on the gathered batch in one process.
    """

    @staticmethod
    def forward(ctx, rows):
        import torch.distributed as dist

        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank]


def gather_batch(weights):
    """``[n, M]`` rows of this process -> the rows of every DDP process (differentiable).

    Without an initialised process group (or with one process) the rows come back as
    they are. Processes may hold different numbers of rows.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return weights
    size = torch.tensor([weights.shape[0]], device=weights.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(n) for n in sizes]
    padded = torch.nn.functional.pad(weights, (0, 0, 0, max(sizes) - weights.shape[0]))
    parts = _GatherRows.apply(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def diversity_loss(weights, gather=False):
    """Diversity term of Eq. 9: ``sum_k rbar_k log rbar_k``, rbar the batch mean.

    Minimising it maximises the entropy of the average routing decision, which
    keeps the data-dependent router from collapsing onto one encoder.

    Arguments
    ---------
    weights : torch.Tensor
        ``[B, M]`` routing weights of this process.
    gather : bool
        Take the mean over every DDP process's rows (:func:`gather_batch`).
    """
    if gather:
        weights = gather_batch(weights)
    return -entropy(weights.mean(dim=0))


ENTROPY_ON = ("weights", "probs")
SELECTED_WEIGHTS = ("probability", "one")
DIVERSITY_BATCH = ("global", "local")


class _Router(nn.Module):
    """Shared KeepTop1 + smoothing logic; subclasses provide the logits."""

    kind = None

    def __init__(self, num_encoders, smoothing=0.0, smoothing_epsilon=None,
                 entropy_on="weights", selected_weight="probability"):
        super().__init__()
        if selected_weight not in SELECTED_WEIGHTS:
            raise ValueError(f"routing selected_weight must be one of {SELECTED_WEIGHTS}, "
                             f"got {selected_weight!r}")
        self.selected_weight = selected_weight
        if num_encoders < 1:
            raise ValueError(f"a router needs at least one encoder, got {num_encoders}")
        if entropy_on not in ENTROPY_ON:
            raise ValueError(f"routing entropy_on must be one of {ENTROPY_ON}, got "
                             f"{entropy_on!r}")
        self.num_encoders = num_encoders
        self.smoothing = smoothing
        self.smoothing_epsilon = smoothing_epsilon
        self.entropy_on = entropy_on

    def _entropy(self, probs, weights):
        """Per-sample entropy of Eq. 7/8: of the KeepTop1 weights (the paper) or of the
        full softmax (``entropy_on="probs"``)."""
        return entropy(weights if self.entropy_on == "weights" else probs)

    def _decide(self, logits):
        """``(probs, weights, mixing, selected)``: ``weights`` are the paper's (KeepTop1,
        smoothed in training; the routing losses use them), ``mixing`` the weights the
        features are mixed with (the same, or 1 on the selected encoder straight-through
        with ``selected_weight="one"``)."""
        probs = torch.softmax(logits.float(), dim=-1)
        weights = keep_top1(probs)
        mixing = weights
        if self.selected_weight == "one":
            mask = (weights > 0).to(weights.dtype)
            mixing = weights + (mask - weights).detach()  # value 1, gradient of p
        if self.training and self.smoothing > 0:
            weights = smooth(weights, self.smoothing, self.smoothing_epsilon)
            mixing = smooth(mixing, self.smoothing, self.smoothing_epsilon)
        return probs, weights, mixing, probs.argmax(dim=-1)


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
    entropy_on : str
        ``"weights"`` (Eq. 7 as written) or ``"probs"`` (see the module notes).

    Example
    -------
    >>> router = IndependentRouter(3, prior=[-1.0, 1.0, -1.0])
    >>> router(torch.zeros(2, 4, 8), torch.tensor([4, 4])).selected
    tensor([1, 1])
    """

    kind = "indep"

    def __init__(self, num_encoders, prior=None, smoothing=0.0, smoothing_epsilon=None,
                 entropy_on="weights", selected_weight="probability"):
        super().__init__(num_encoders, smoothing, smoothing_epsilon, entropy_on,
                         selected_weight)
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
        probs, weights, mixing, selected = self._decide(self.w_indep.unsqueeze(0))
        loss = self._entropy(probs[0], weights[0])
        return RoutingDecision(
            probs=probs.expand(batch_size, -1),
            weights=weights.expand(batch_size, -1),
            selected=selected.expand(batch_size),
            loss=loss,
            # the selected encoder's probability: the scale its features enter with
            loss_parts={"indep_ent": loss.detach(), "indep_p": probs.max().detach()},
            mixing=mixing.expand(batch_size, -1),
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
    entropy_on : str
        ``"weights"`` (Eq. 8 as written) or ``"probs"`` (see the module notes).
    diversity_batch : str
        ``"global"``: Eq. 9's ``rbar`` over every DDP process's samples in training;
        ``"local"``: over this process's batch.
    """

    kind = "dep"

    def __init__(self, base_dim, num_encoders, smoothing=0.1, smoothing_epsilon=None,
                 entropy_on="weights", diversity_batch="global", selected_weight="probability"):
        super().__init__(num_encoders, smoothing, smoothing_epsilon, entropy_on,
                         selected_weight)
        if diversity_batch not in DIVERSITY_BATCH:
            raise ValueError(f"diversity_batch must be one of {DIVERSITY_BATCH}, got "
                             f"{diversity_batch!r}")
        self.diversity_batch = diversity_batch
        self.w_dep = nn.Linear(base_dim, num_encoders, bias=False)

    def forward(self, z_base, base_lens):
        """Route each sample from the time-mean of its valid base frames."""
        frames = torch.arange(z_base.shape[1], device=z_base.device)
        mask = (frames.unsqueeze(0) < base_lens.unsqueeze(1)).to(z_base.dtype)
        mean = (z_base * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        probs, weights, mixing, selected = self._decide(
            self.w_dep(mean.to(self.w_dep.weight.dtype)))
        ent = self._entropy(probs, weights).mean()
        # gathered in training only: evaluation and decoding may run unevenly per process
        div = diversity_loss(weights, gather=self.training and self.diversity_batch == "global")
        return RoutingDecision(
            probs=probs,
            weights=weights,
            selected=selected,
            loss=ent + div,
            loss_parts={"dep_ent": ent.detach(), "dep_div": div.detach(),
                        "dep_p": probs.max(dim=-1).values.mean().detach()},
            mixing=mixing,
        )


def build_router(kind, base_dim, num_encoders, indep_prior=None, dep_smoothing=0.1,
                 smoothing_epsilon=None, entropy_on="weights", diversity_batch="global",
                 selected_weight="probability"):
    """Make a router from its config name (``"indep"`` or ``"dep"``)."""
    if kind == "indep":
        return IndependentRouter(num_encoders, prior=indep_prior,
                                 smoothing_epsilon=smoothing_epsilon, entropy_on=entropy_on,
                                 selected_weight=selected_weight)
    if kind == "dep":
        return DependentRouter(base_dim, num_encoders, smoothing=dep_smoothing,
                               smoothing_epsilon=smoothing_epsilon, entropy_on=entropy_on,
                               diversity_batch=diversity_batch,
                               selected_weight=selected_weight)
    raise ValueError(f"unknown router kind {kind!r}; expected one of {ROUTER_KINDS}")


LOSS_REDUCTIONS = ("half_sum", "mean")


def mowe_loss(decisions, reduction="half_sum"):
    """L_MoWE = 1/2 * sum of the routers' losses (Eq. 6 for indep + dep).

    Arguments
    ---------
    decisions : list of RoutingDecision
    reduction : str
        ``"half_sum"``: Eq. 6's factor 1/2 whatever the number of routers (a single
        router's loss is halved); ``"mean"``: the mean over the routers (the same for
        two routers; a single router's full loss).

    Returns
    -------
    loss : torch.Tensor
    parts : dict
        The routers' named parts (suffixed ``_<router index>`` when a kind repeats).
    """
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"routing loss reduction must be one of {LOSS_REDUCTIONS}, got "
                         f"{reduction!r}")
    scale = 0.5 if reduction == "half_sum" else 1.0 / len(decisions)
    loss = scale * sum(decision.loss for decision in decisions)
    parts = {}
    for index, decision in enumerate(decisions):
        for name, value in decision.loss_parts.items():
            key = name if name not in parts else f"{name}_{index}"
            parts[key] = value
    return loss, parts
