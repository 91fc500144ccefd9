"""Mixture of weak encoders: sparse dispatch, equality with dense, gradients, alignment."""

import pytest
import torch
import torch.nn as nn

from mowe.models.encoders import SmallEncoder
from mowe.models.mixture import FeatureAligner, MixtureOfWeakEncoders, align_time


class RecordingEncoder(nn.Module):
    """A deterministic encoder that records every call it gets.

    Features: 20 ms frames of the framed waveform through a linear layer, so that
    each sample's output depends only on its own audio.
    """

    def __init__(self, output_dim, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(320, output_dim)
        self.output_dim = output_dim
        self.calls = []

    def forward(self, wav, wav_lens):
        self.calls.append(wav.shape[0])
        frames = wav.shape[1] // 320
        feats = self.linear(wav[:, : frames * 320].reshape(wav.shape[0], frames, 320))
        lens = torch.clamp(torch.round(wav_lens * wav.shape[1]).long() // 320, min=1)
        return feats, lens


def make_mixture(dispatch, routers=("indep", "dep"), num_encoders=4, dims=None,
                 dep_smoothing=0.1, prior=None):
    dims = dims or [8] * num_encoders
    pool = [RecordingEncoder(dim, seed) for seed, dim in enumerate(dims)]
    torch.manual_seed(123)
    return MixtureOfWeakEncoders(pool, base_dim=6, routers=list(routers), weak_dim=8,
                                 dispatch=dispatch, dep_smoothing=dep_smoothing,
                                 indep_prior=prior)


def batch(size=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    wav = torch.randn(size, 6400, generator=generator)
    wav_lens = torch.linspace(1.0, 0.5, size)
    z_base = torch.randn(size, 10, 6, generator=generator)
    base_lens = torch.clamp(torch.round(wav_lens * 10).long(), min=1)
    return wav, wav_lens, z_base, base_lens


def force_dependent_choices(mixture, router_index, z_base, choices):
    """Set W_dep so that sample i's data-dependent choice is ``choices[i]``."""
    # Route by the sign pattern of the first feature: easier to set the base feats.
    router = mixture.routers[router_index]
    with torch.no_grad():
        router.w_dep.weight.zero_()
        for k in range(router.num_encoders):
            router.w_dep.weight[k, k] = 10.0
        z_base.zero_()
        for i, k in enumerate(choices):
            z_base[i, :, k] = 1.0


@pytest.mark.parametrize("routers", [("indep", "dep"), ("dep",), ("indep",), ("dep", "dep")])
def test_sparse_equals_dense_without_smoothing(routers):
    wav, wav_lens, z_base, base_lens = batch()
    sparse = make_mixture("sparse", routers)
    dense = make_mixture("dense", routers)
    dense.load_state_dict(sparse.state_dict())
    sparse.eval()
    dense.eval()
    out_sparse = sparse(wav, wav_lens, z_base, base_lens)
    out_dense = dense(wav, wav_lens, z_base, base_lens)
    assert out_sparse.features.shape == (6, 10, 8 * len(routers))
    assert torch.allclose(out_sparse.features, out_dense.features, atol=1e-6)
    assert torch.equal(out_sparse.selected, out_dense.selected)
    assert torch.allclose(out_sparse.loss, out_dense.loss)


def test_sparse_equals_dense_in_training_when_smoothing_is_off():
    wav, wav_lens, z_base, base_lens = batch()
    sparse = make_mixture("sparse", dep_smoothing=0.0)
    dense = make_mixture("dense", dep_smoothing=0.0)
    dense.load_state_dict(sparse.state_dict())
    assert torch.allclose(sparse(wav, wav_lens, z_base, base_lens).features,
                          dense(wav, wav_lens, z_base, base_lens).features, atol=1e-6)


def test_each_selected_encoder_runs_once_per_sample_on_its_samples_only():
    wav, wav_lens, z_base, base_lens = batch()
    mixture = make_mixture("sparse", prior=[-1.0, 1.0, -1.0, -1.0])
    choices = [1, 1, 2, 3, 2, 1]  # samples 0, 1, 5 pick encoder 1 with both routers
    force_dependent_choices(mixture, 1, z_base, choices)
    out = mixture(wav, wav_lens, z_base, base_lens)
    assert out.selected[:, 0].tolist() == [1] * 6
    assert out.selected[:, 1].tolist() == choices
    calls = [encoder.calls for encoder in mixture.encoders]
    assert calls[0] == [], "an encoder nobody selected must not run"
    assert calls[1] == [6], "every sample uses encoder 1 once, even if chosen twice"
    assert calls[2] == [2] and calls[3] == [1]
    assert out.calls == {1: 6, 2: 2, 3: 1}


def test_dense_mode_runs_every_encoder_on_every_sample():
    wav, wav_lens, z_base, base_lens = batch()
    mixture = make_mixture("dense")
    mixture(wav, wav_lens, z_base, base_lens)
    assert [encoder.calls for encoder in mixture.encoders] == [[6]] * 4


def test_gradients_sparse_skips_unselected_dense_reaches_all():
    wav, wav_lens, z_base, base_lens = batch()
    sparse = make_mixture("sparse", prior=[1.0, -1.0, -1.0, -1.0])
    force_dependent_choices(sparse, 1, z_base, [2, 2, 2, 0, 0, 0])
    out = sparse(wav, wav_lens, z_base, base_lens)
    (out.features.pow(2).sum() + out.loss).backward()
    grads = [e.linear.weight.grad for e in sparse.encoders]
    assert grads[1] is None and grads[3] is None
    assert grads[0] is not None and grads[2] is not None
    assert sparse.routers[0].w_indep.grad.abs().sum() > 0
    assert sparse.routers[1].w_dep.weight.grad.abs().sum() > 0

    dense = make_mixture("dense", prior=[1.0, -1.0, -1.0, -1.0])
    out = dense(wav, wav_lens, z_base, base_lens)
    out.features.pow(2).sum().backward()
    assert all(e.linear.weight.grad is not None and e.linear.weight.grad.abs().sum() > 0
               for e in dense.encoders), "smoothed weights make every encoder contribute"


def test_mixed_feature_sizes_are_aligned():
    wav, wav_lens, z_base, base_lens = batch()
    for alignment in ("interpolate", "linear"):
        pool = [RecordingEncoder(dim, seed) for seed, dim in enumerate([8, 12, 5])]
        mixture = MixtureOfWeakEncoders(pool, base_dim=6, routers=["indep", "dep"],
                                        dispatch="dense", feature_alignment=alignment)
        assert mixture.weak_dim == 8 and mixture.output_dim == 16
        out = mixture(wav, wav_lens, z_base, base_lens)
        assert out.features.shape == (6, 10, 16)
        # Frames past a sample's base length stay zero.
        assert out.features[5, base_lens[5]:].abs().sum() == 0


def test_align_time_interpolates_each_valid_region():
    ramp = torch.arange(4.0).reshape(1, 4, 1).repeat(2, 1, 1)
    aligned = align_time(ramp, torch.tensor([4, 2]), torch.tensor([8, 4]), 8)
    assert aligned.shape == (2, 8, 1)
    # Sample 0: 4 frames onto 8, monotone from 0 to 3.
    assert aligned[0, 0, 0] == 0 and aligned[0, 7, 0] == 3
    assert torch.all(aligned[0, 1:, 0] >= aligned[0, :-1, 0])
    # Sample 1: only its 2 valid frames (0, 1) are stretched over 4 frames.
    assert aligned[1, :4, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    assert aligned[1, 4:].abs().sum() == 0


def test_feature_aligner_interpolates_to_target_size():
    aligner = FeatureAligner(4, 8)
    out = aligner(torch.ones(2, 3, 4))
    assert out.shape == (2, 3, 8) and torch.allclose(out, torch.ones(2, 3, 8))


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="unknown router"):
        MixtureOfWeakEncoders([RecordingEncoder(4, 0)], base_dim=2, routers=["top2"])
    with pytest.raises(ValueError, match="empty"):
        MixtureOfWeakEncoders([], base_dim=2)
    with pytest.raises(ValueError, match="dispatch"):
        MixtureOfWeakEncoders([RecordingEncoder(4, 0)], base_dim=2, dispatch="lazy")


def test_real_small_encoders_in_the_pool():
    pool = [SmallEncoder(d_model=16, num_layers=1, num_heads=2) for _ in range(3)]
    mixture = MixtureOfWeakEncoders(pool, base_dim=6)
    wav, wav_lens, z_base, base_lens = batch(size=3)
    out = mixture(wav, wav_lens, z_base, base_lens)
    assert out.features.shape == (3, 10, 32)
    assert torch.isfinite(out.features).all()
