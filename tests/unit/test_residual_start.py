"""``mowe_feature_init: zero``: a MoWE model starts as its base-only baseline and the
weak encoders enter through training."""

import pytest
import speechbrain as sb
import torch

from conftest import load_spec, make_brain, padded_batch
from mowe.models.adapters import LinearDownsampleAdapter
from mowe.models.residual_start import start_as_base_only


def build(tiny_models, seed, **overrides):
    torch.manual_seed(seed)
    model = load_spec(tiny_models, **overrides)["model"]
    return model.eval()


def audio_tokens(model, seed=3):
    generator = torch.Generator().manual_seed(seed)
    wav = torch.randn(2, 16000, generator=generator) * 0.1
    with torch.no_grad():
        embeds, lens, _ = model.encode_audio(wav, torch.tensor([1.0, 0.55]))
    return embeds, lens


@pytest.mark.parametrize("adapter_kind", ["linear", "conv"])
def test_zero_init_starts_as_the_baseline(tiny_models, adapter_kind):
    baseline = build(tiny_models, 11, mixture=None, adapter_kind=adapter_kind)
    mowe = build(tiny_models, 11, mowe_feature_init="zero", adapter_kind=adapter_kind)
    assert mowe.mixture is not None
    base_tokens, base_lens = audio_tokens(baseline)
    mowe_tokens, mowe_lens = audio_tokens(mowe)
    assert torch.equal(base_lens, mowe_lens)
    torch.testing.assert_close(mowe_tokens, base_tokens, rtol=0, atol=1e-6)
    assert torch.equal(mowe.projection.weight, baseline.projection.weight)
    # the weak encoders are there and random: they are not what makes the outputs equal
    weak = [p for p in mowe.mixture.parameters() if p.dim() > 1]
    assert weak and all(p.abs().sum() > 0 for p in weak)


def test_random_init_does_not_start_as_the_baseline(tiny_models):
    """The control: without the residual start the two models differ at step 0."""
    baseline = build(tiny_models, 11, mixture=None)
    mowe = build(tiny_models, 11, mowe_feature_init="random")
    difference = (audio_tokens(mowe)[0] - audio_tokens(baseline)[0]).abs().max()
    assert difference > 1e-3


def test_moe_adapter_gets_zeros_on_the_mowe_features(tiny_models):
    mowe = build(tiny_models, 5, mowe_feature_init="zero", adapter_kind="moe")
    adapter = mowe.adapter
    base_dim = mowe.base_encoder.output_dim
    input_dim = base_dim + mowe.mixture.output_dim
    readers = [m for m in adapter.modules() if isinstance(m, torch.nn.Linear)
               and m.in_features == adapter.frames_per_token * input_dim]
    assert len(readers) >= 2                     # the gate and every expert's first layer
    for layer in readers:
        weight = layer.weight.view(layer.out_features, adapter.frames_per_token, input_dim)
        assert torch.count_nonzero(weight[..., base_dim:]) == 0
        assert torch.count_nonzero(weight[..., :base_dim]) > 0


def test_start_as_base_only_copies_base_columns_and_zeroes_the_rest():
    torch.manual_seed(0)
    reference = LinearDownsampleAdapter(input_dim=3, output_dim=4, num_tokens=2,
                                        frames_per_token=2)
    wide = LinearDownsampleAdapter(input_dim=5, output_dim=4, num_tokens=2,
                                   frames_per_token=2)
    assert start_as_base_only(wide, reference, base_dim=3, input_dim=5) == 1
    weight = wide.linear.weight.view(4, 2, 5)
    # frame f's base columns are the reference's frame-f columns, wherever they sit
    assert torch.equal(weight[:, :, :3], reference.linear.weight.view(4, 2, 3))
    assert torch.count_nonzero(weight[:, :, 3:]) == 0
    assert torch.equal(wide.linear.bias, reference.linear.bias)
    feats = torch.randn(2, 6, 5)
    lens = torch.tensor([6, 4])
    changed = feats.clone()
    changed[..., 3:] = torch.randn(2, 6, 2) * 100     # the extra channels do not count
    torch.testing.assert_close(wide(feats, lens)[0], wide(changed, lens)[0])
    torch.testing.assert_close(wide(feats, lens)[0], reference(feats[..., :3], lens)[0])


def test_weak_encoders_learn_from_a_zero_start(tiny_models, audio_batch):
    """The zeros are a start, not a wall: after a step the adapter reads z_MoWE and
    the weak encoders and routers receive gradients."""
    model = build(tiny_models, 2, mowe_feature_init="zero").train()
    input_dim = model.base_encoder.output_dim + model.mixture.output_dim
    base_dim = model.base_encoder.output_dim
    brain = make_brain(model)
    brain.init_optimizers()
    batch = padded_batch(audio_batch)
    brain.fit_batch(batch)

    def mowe_columns():
        weight = model.adapter.linear.weight
        return weight.view(weight.shape[0], -1, input_dim)[..., base_dim:]

    assert torch.count_nonzero(mowe_columns()) > 0
    model.zero_grad()
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(outputs, batch, sb.Stage.TRAIN).backward()
    encoders = [p for p in model.mixture.encoders.parameters() if p.grad is not None]
    assert encoders and max(float(p.grad.abs().max()) for p in encoders) > 0


def test_an_unknown_init_is_refused(tiny_models):
    with pytest.raises(ValueError, match="mowe_feature_init must be one of"):
        build(tiny_models, 0, mowe_feature_init="zeros")
