"""Encoders behind the common interface, and the adapters."""

import pytest
import torch

from mowe.models.adapters import ConvAdapter, LinearDownsampleAdapter
from mowe.models.encoders import SmallEncoder, SSLEncoder, WhisperEncoder


def clips(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    wav = torch.zeros(len(lengths), longest)
    for row, length in zip(wav, lengths):
        row[:length] = torch.randn(length, generator=generator) * 0.1
    return wav, torch.tensor(lengths, dtype=torch.float) / longest


def assert_batch_equals_single(encoder, lengths, atol=1e-4):
    encoder.eval()
    wav, wav_lens = clips(lengths)
    feats, feat_lens = encoder(wav, wav_lens)
    for i, length in enumerate(lengths):
        alone, alone_lens = encoder(wav[i:i + 1, :length], torch.ones(1))
        n = int(feat_lens[i])
        assert n == int(alone_lens[0])
        assert torch.allclose(feats[i, :n], alone[0, :n], atol=atol), \
            (feats[i, :n] - alone[0, :n]).abs().max()
    return feats, feat_lens


@pytest.fixture(scope="module")
def whisper(tiny_models):
    return WhisperEncoder(tiny_models["whisper"], tiny_models["cache"])


def test_whisper_unpadded_frames_and_batch_independence(whisper):
    assert whisper.output_dim == 32
    feats, lens = assert_batch_equals_single(whisper, [16000, 9600, 4000])
    # 10 ms mel hop, stride-2 conv: 20 ms frames.
    assert lens.tolist() == [50, 30, 13]
    assert feats.shape == (3, 50, 32)


def test_whisper_unpadded_equals_padded_on_a_30s_clip(tiny_models, whisper):
    padded = WhisperEncoder(tiny_models["whisper"], tiny_models["cache"], pad_to_30s=True)
    padded.load_state_dict(whisper.state_dict())
    whisper.eval()
    padded.eval()
    wav, wav_lens = clips([480000])
    full, full_lens = padded(wav, wav_lens)
    sliced, sliced_lens = whisper(wav, wav_lens)
    assert full.shape == (1, 1500, 32) and full_lens.tolist() == [1500]
    assert torch.allclose(full, sliced, atol=1e-4)


def test_whisper_padded_mode_always_encodes_1500_frames(tiny_models):
    padded = WhisperEncoder(tiny_models["whisper"], tiny_models["cache"], pad_to_30s=True)
    feats, lens = padded(*clips([16000, 8000]))
    assert feats.shape == (2, 1500, 32)
    assert lens.tolist() == [50, 25], "valid frames still say how much is audio"


def test_frozen_encoder_gets_no_gradient(tiny_models):
    frozen = WhisperEncoder(tiny_models["whisper"], tiny_models["cache"], freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    feats, _ = frozen(*clips([8000]))
    assert not feats.requires_grad
    small = SmallEncoder(d_model=16, num_layers=1, num_heads=2, freeze=True)
    assert not any(p.requires_grad for p in small.parameters())


def test_small_encoder_is_batch_independent():
    encoder = SmallEncoder(d_model=16, num_layers=2, num_heads=2)
    feats, lens = assert_batch_equals_single(encoder, [16000, 7000, 3000], atol=1e-5)
    assert lens.tolist() == [26, 11, 5]  # fbank frames n//160+1, two stride-2 convs
    assert feats[2, 5:].abs().sum() == 0


def test_hubert_through_speechbrain_lobe(tmp_path):
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                          conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                          num_conv_pos_embedding_groups=2)
    HubertModel(config).save_pretrained(tmp_path / "hubert")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "hubert")
    encoder = SSLEncoder(str(tmp_path / "hubert"), str(tmp_path / "cache"), kind="hubert")
    feats, lens = encoder(*clips([16000, 8000]))
    assert encoder.output_dim == 32
    assert feats.shape[0] == 2 and feats.shape[2] == 32
    assert lens[0] == feats.shape[1] and lens[1] < lens[0]


def test_unknown_ssl_kind_is_reported(tmp_path):
    with pytest.raises(ValueError, match="hubert, wavlm or wav2vec2"):
        SSLEncoder("x", str(tmp_path), kind="data2vec")


def test_linear_downsample_adapter_gives_fixed_token_count():
    adapter = LinearDownsampleAdapter(input_dim=6, output_dim=4, num_tokens=100,
                                      frames_per_token=15)
    feats = torch.randn(2, 1500, 6)
    tokens, lens = adapter(feats, torch.tensor([1500, 700]))
    assert tokens.shape == (2, 100, 4) and lens.tolist() == [100, 100]
    # With 1500 valid frames it is exactly "stack 15 frames, Linear, GELU".
    expected = torch.nn.functional.gelu(adapter.linear(feats[0].reshape(100, 90)))
    assert torch.allclose(tokens[0], expected, atol=1e-5)


def test_conv_adapter_kernel_equals_stride_and_lengths():
    adapter = ConvAdapter(input_dim=6, output_dim=4, stride=8)
    assert adapter.conv.kernel_size == (8,) and adapter.conv.stride == (8,)
    feats = torch.randn(2, 20, 6)
    tokens, lens = adapter(feats, torch.tensor([20, 9]))
    assert tokens.shape == (2, 3, 4) and lens.tolist() == [3, 2]
    alone, _ = adapter(feats[1:, :9], torch.tensor([9]))
    assert torch.allclose(tokens[1, :2], alone[0], atol=1e-6)


def test_base_encoder_kind_picks_any_encoder_by_yaml(tiny_models):
    """Table I needs each encoder alone as the base: the spec's base_encoder_kind."""
    from conftest import load_spec

    from mowe.models.encoders import SpecAugment, make_encoder

    hparams = load_spec(tiny_models, base_encoder_kind="small", mixture=None)
    model = hparams["model"]
    assert type(model.base_encoder).__name__ == "SmallEncoder"
    out = model(*clips([16000, 8000]), ["Transcribe.", "Transcribe."], ["hi", "yes"])
    assert torch.isfinite(out.next_token_loss)
    with pytest.raises(ValueError, match="SpecAugment"):
        make_encoder("hubert", "x", "y", augment=SpecAugment(time_masks=2))
    with pytest.raises(ValueError, match="unknown encoder kind"):
        make_encoder("beats")
