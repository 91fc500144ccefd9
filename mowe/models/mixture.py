"""MixtureOfWeakEncoders: the weak-encoder pool, its routers and sparse dispatch.

For a batch it (1) routes every sample with each configured router, (2) runs only the
encoders some router selected, each once per sample even when two routers pick the
same one, grouping the samples of each encoder into one sub-batch, (3) aligns their
outputs to the base encoder's frames and to a common feature size, and (4) returns
``z_MoWE = z_router1 ⊕_f z_router2 ⊕_f ...`` with ``z_j = sum_k r_j[k] E_k(a)``.

``dispatch="dense"`` runs every encoder on every sample instead: with the paper's
training-time smoothing every weight is non-zero, so this is the literal Eq. 3/5.
In sparse mode an encoder contributes to router ``j`` only where ``j`` selected it;
without smoothing (evaluation) both modes compute the same thing.

Example
-------
>>> import torch
>>> from mowe.models.encoders import SmallEncoder
>>> pool = [SmallEncoder(d_model=16, num_layers=1, num_heads=2) for _ in range(3)]
>>> mixture = MixtureOfWeakEncoders(pool, base_dim=8, routers=["indep", "dep"])
>>> out = mixture(torch.randn(2, 8000), torch.ones(2), torch.randn(2, 25, 8),
...               torch.tensor([25, 25]))
>>> out.features.shape
torch.Size([2, 25, 32])
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.models.routers import LOSS_REDUCTIONS, ROUTER_KINDS, build_router, mowe_loss


@dataclass
class MoWEOutput:
    """Result of :class:`MixtureOfWeakEncoders`.

    Attributes
    ----------
    features : torch.Tensor
        ``[B, T_base, n_routers * weak_dim]`` z_MoWE, zero beyond each sample's frames.
    weights : torch.Tensor
        ``[B, n_routers, M]`` routing weights used for mixing.
    selected : torch.Tensor
        ``[B, n_routers]`` selected encoder per router.
    loss : torch.Tensor
        L_MoWE (Eq. 6).
    loss_parts : dict
        Named parts of the routing loss (detached).
    calls : dict
        Encoder index -> number of samples it encoded in this batch.
    """

    features: torch.Tensor
    weights: torch.Tensor
    selected: torch.Tensor
    loss: torch.Tensor
    loss_parts: dict
    calls: dict


def repeat(factory, count):
    """A pool of ``count`` independently initialised encoders from one factory.

    Used from YAML as ``!apply:mowe.models.mixture.repeat [!name:mowe.models.encoders.X {...}, 4]``.
    """
    return [factory for _ in range(int(count))]


def align_time(feats, lens, target_lens, target_frames):
    """Linearly interpolate each sample's valid frames onto the target frame count.

    Sample ``i``'s ``lens[i]`` frames cover the same audio as the base encoder's
    ``target_lens[i]`` frames, whatever the two frame rates or paddings are, so the
    alignment is done per sample on the valid region; frames past ``target_lens[i]``
    are zero.

    Arguments
    ---------
    feats : torch.Tensor
        ``[B, T, D]``.
    lens : torch.Tensor
        ``[B]`` valid frames of ``feats``.
    target_lens : torch.Tensor
        ``[B]`` valid frames of the target.
    target_frames : int
        Padded length of the output.

    Returns
    -------
    torch.Tensor
        ``[B, target_frames, D]``.
    """
    rows = []
    for sample, (length, target) in enumerate(zip(lens.tolist(), target_lens.tolist())):
        length = max(int(length), 1)
        target = max(int(target), 1)
        valid = feats[sample, :length].transpose(0, 1).unsqueeze(0)  # [1, D, T]
        if length != target:
            valid = F.interpolate(valid, size=target, mode="linear", align_corners=False)
        rows.append(F.pad(valid[0].transpose(0, 1), (0, 0, 0, target_frames - target)))
    return torch.stack(rows)


class FeatureAligner(nn.Module):
    """Bring one encoder's feature size to the pool's common ``weak_dim``.

    ``mode="interpolate"`` linearly interpolates along the feature axis (the paper's
    choice for HuBERT -> Whisper-tiny sizes); ``mode="linear"`` learns a projection.
    Equal sizes pass through unchanged in both modes.
    """

    def __init__(self, input_dim, output_dim, mode="interpolate"):
        super().__init__()
        if mode not in ("interpolate", "linear"):
            raise ValueError(f"feature alignment must be 'interpolate' or 'linear', got {mode!r}")
        self.input_dim, self.output_dim, self.mode = input_dim, output_dim, mode
        self.projection = (
            nn.Linear(input_dim, output_dim)
            if mode == "linear" and input_dim != output_dim else None
        )

    def forward(self, feats):
        if self.input_dim == self.output_dim:
            return feats
        if self.projection is not None:
            return self.projection(feats)
        batch, frames, dim = feats.shape
        flat = feats.reshape(batch * frames, 1, dim)
        flat = F.interpolate(flat, size=self.output_dim, mode="linear", align_corners=False)
        return flat.reshape(batch, frames, self.output_dim)


class MixtureOfWeakEncoders(nn.Module):
    """A routed pool of weak encoders whose outputs supplement the base encoder.

    Arguments
    ---------
    encoders : list
        The pool: encoder modules, or zero-argument factories (``!name:`` in YAML)
        that build one, each following the ``(wav, wav_lens) -> (feats, feat_lens)``
        interface of :mod:`mowe.models.encoders` and exposing ``output_dim``.
    base_dim : int
        Feature size of the base encoder (input of the data-dependent router).
    routers : list of str
        One entry per mixture: ``["indep", "dep"]`` (paper default), ``["dep"]``,
        ``["indep"]``, ``["dep", "dep"]`` ... (Table IV).
    weak_dim : int, optional
        Common feature size of the pool's outputs; default: the first encoder's.
    feature_alignment : str
        ``"interpolate"`` (paper) or ``"linear"`` (learned projection).
    dispatch : str
        ``"sparse"`` (run selected encoders only) or ``"dense"`` (run all).
    indep_prior : list of float, optional
        Initial ``w_indep`` (e.g. +1 for one encoder, -1 for the others).
    dep_smoothing : float
        Training-time smoothing share of data-dependent routers (paper: 0.1).
    smoothing_epsilon : float, optional
        Uniform value of the smoothing (default ``0.1 / M``).
    routing_entropy_on : str
        Eq. 7/8 on the KeepTop1 ``"weights"`` (paper) or the softmax ``"probs"``.
    diversity_batch : str
        Eq. 9's ``rbar`` over all DDP processes' samples (``"global"``) or one
        process's (``"local"``).
    loss_reduction : str
        ``"half_sum"`` (Eq. 6's 1/2 for any router set) or ``"mean"`` over routers.
    selected_weight : str
        Mix the selected encoder's features at its probability (``"probability"``, the
        paper) or at 1, straight-through (``"one"``).
        See :mod:`mowe.models.routers` for what each option does.
    """

    def __init__(self, encoders, base_dim, routers=("indep", "dep"), weak_dim=None,
                 feature_alignment="interpolate", dispatch="sparse", indep_prior=None,
                 dep_smoothing=0.1, smoothing_epsilon=None, routing_entropy_on="weights",
                 diversity_batch="global", loss_reduction="half_sum",
                 selected_weight="probability"):
        super().__init__()
        pool = [encoder() if not isinstance(encoder, nn.Module) else encoder
                for encoder in encoders]
        if not pool:
            raise ValueError("the weak-encoder pool is empty: list at least one encoder")
        if not routers:
            raise ValueError("a mixture needs at least one router ('indep' or 'dep')")
        unknown = [kind for kind in routers if kind not in ROUTER_KINDS]
        if unknown:
            raise ValueError(f"unknown router kinds {unknown}; expected {ROUTER_KINDS}")
        if dispatch not in ("sparse", "dense"):
            raise ValueError(f"dispatch must be 'sparse' or 'dense', got {dispatch!r}")
        self.encoders = nn.ModuleList(pool)
        self.weak_dim = int(weak_dim or pool[0].output_dim)
        self.aligners = nn.ModuleList(
            FeatureAligner(encoder.output_dim, self.weak_dim, feature_alignment)
            for encoder in pool
        )
        self.router_kinds = list(routers)
        self.routers = nn.ModuleList(
            build_router(kind, base_dim, len(pool), indep_prior, dep_smoothing,
                         smoothing_epsilon, routing_entropy_on, diversity_batch,
                         selected_weight)
            for kind in self.router_kinds
        )
        self.dispatch = dispatch
        self.loss_reduction = loss_reduction
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got "
                             f"{loss_reduction!r}")

    @property
    def num_encoders(self):
        """Pool size M."""
        return len(self.encoders)

    @property
    def output_dim(self):
        """Feature size of z_MoWE: one ``weak_dim`` block per router."""
        return self.weak_dim * len(self.routers)

    def forward(self, wav, wav_lens, z_base, base_lens):
        """Route, encode and mix.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, S]`` waveforms.
        wav_lens : torch.Tensor
            ``[B]`` relative lengths (SpeechBrain convention).
        z_base : torch.Tensor
            ``[B, T, d_base]`` base-encoder features.
        base_lens : torch.Tensor
            ``[B]`` valid base frames.

        Returns
        -------
        MoWEOutput
        """
        decisions = [router(z_base, base_lens) for router in self.routers]
        weights = torch.stack([d.mixing for d in decisions], dim=1)  # [B, R, M]
        selected = torch.stack([d.selected for d in decisions], dim=1)  # [B, R]
        if self.dispatch == "dense":
            samples_per_encoder = {k: torch.arange(wav.shape[0], device=wav.device)
                                   for k in range(self.num_encoders)}
            mixing = weights
        else:
            samples_per_encoder = {}
            for k in torch.unique(selected).tolist():
                samples_per_encoder[k] = torch.nonzero((selected == k).any(dim=1)).flatten()
            one_hot = F.one_hot(selected, self.num_encoders).to(weights.dtype)
            mixing = weights * one_hot

        frames = z_base.shape[1]
        mixed = z_base.new_zeros(wav.shape[0], len(self.routers), frames, self.weak_dim)
        calls = {}
        for k, samples in samples_per_encoder.items():
            aligned = self._encode(k, wav[samples], wav_lens[samples], base_lens[samples], frames)
            calls[k] = int(samples.numel())
            # [n, R] weights of this encoder for the samples it encoded.
            sample_weights = mixing[samples, :, k].to(aligned.dtype)
            contribution = sample_weights[:, :, None, None] * aligned.unsqueeze(1)
            mixed = mixed.index_add(0, samples, contribution.to(mixed.dtype))
        features = mixed.permute(0, 2, 1, 3).reshape(wav.shape[0], frames, self.output_dim)
        loss, parts = mowe_loss(decisions, self.loss_reduction)
        return MoWEOutput(features, weights, selected, loss, parts, calls)

    def _encode(self, index, wav, wav_lens, base_lens, frames):
        """Encode a sub-batch with encoder ``index`` and align it to the base frames."""
        # Trim the padding the sub-batch no longer needs and re-normalise the
        # relative lengths to its own longest sample.
        absolute = wav_lens * wav.shape[1]
        longest = int(torch.ceil(absolute.max()).item())
        wav = wav[:, :longest]
        feats, feat_lens = self.encoders[index](wav, absolute / longest)
        feats = self.aligners[index](feats)
        return align_time(feats, feat_lens, base_lens, frames)
