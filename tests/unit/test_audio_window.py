"""The paper's 30 s audio window (issue 11, points 4-6): every encoder sees the same
trimmed audio, the adapter reads Whisper's 1500 frames in 30 s mode, and SpecAugment's
time masks fall on the clip, not on its padding."""

import json
import subprocess
import sys
import types

import numpy
import pytest
import soundfile
import torch

from conftest import REPO
from mowe.models.adapters import make_adapter
from mowe.models.encoders import AudioEncoder, SpecAugment, WhisperEncoder, absolute_lengths
from mowe.models.mixture import MixtureOfWeakEncoders
from mowe.models.audio_llm import AudioLLM

RATE = 16000


class ClockEncoder(AudioEncoder):
    """A probe encoder: frame i's feature is the mean of the waveform over the frame.
    Fed a ramp whose value is the time in seconds, a frame reads the time it covers."""

    def __init__(self, frame_seconds):
        super().__init__()
        self.hop = int(frame_seconds * RATE)
        self.output_dim = 1

    def encode(self, wav, wav_lens):
        lens = absolute_lengths(wav, wav_lens) // self.hop
        frames = wav[:, : wav.shape[1] // self.hop * self.hop].reshape(wav.shape[0], -1, self.hop)
        return frames.mean(-1, keepdim=True), lens


def model_with(base, pool=None, adapter="linear", seconds=30.0):
    """An AudioLLM whose LLM is a stand-in (only its width is used by the audio side)."""
    mixture = None
    if pool is not None:
        mixture = lambda base_dim: MixtureOfWeakEncoders(  # noqa: E731
            pool, base_dim, routers=["indep"], indep_prior=[1.0] + [-1.0] * (len(pool) - 1))
    return AudioLLM(base, types.SimpleNamespace(hidden_size=8),
                    lambda input_dim: make_adapter(input_dim, adapter, 16, 100, 15, 8),
                    mixture=mixture, max_audio_seconds=seconds).eval()


def ramp(seconds):
    return (torch.arange(int(seconds * RATE), dtype=torch.float32) / RATE).unsqueeze(0)


@pytest.mark.parametrize("weak_frame", [0.02, 0.025])
def test_a_40s_clip_every_encoder_frame_at_t_reads_audio_at_t(tiny_models, weak_frame):
    base = WhisperEncoder(tiny_models["whisper"], tiny_models["cache"], pad_to_30s=True)
    model = model_with(base, [ClockEncoder(weak_frame), ClockEncoder(0.04)])
    feats, adapter_lens, base_lens, mowe = model.encode_features(ramp(40.0), torch.ones(1))
    assert base_lens.tolist() == [1500]  # Whisper: 30 s of 20 ms frames
    weight = mowe.weights[0, 0, 0]
    clock = (mowe.features[0, :, 0] / weight).detach()
    times = (torch.arange(1500) + 0.5) * 0.02
    assert (clock - times).abs().max() < 0.05, "a weak frame reads another time's audio"
    assert float(clock[-1]) < 30.0
    # the base encoder, too, sees the first 30 s only: equal to encoding them alone
    alone, _ = base(ramp(30.0), torch.ones(1))
    torch.testing.assert_close(feats[:, :, : base.output_dim], alone, atol=1e-5, rtol=1e-4)


def test_trimming_holds_in_training_and_for_a_batch(tiny_models):
    model = model_with(ClockEncoder(0.02), [ClockEncoder(0.025)]).train()
    wav = torch.zeros(2, 40 * RATE)
    wav[0] = ramp(40.0)[0]
    wav[1, : 10 * RATE] = ramp(10.0)[0]
    _, _, base_lens, mowe = model.encode_features(wav, torch.tensor([1.0, 0.25]))
    assert base_lens.tolist() == [1500, 500]
    assert mowe.features.shape[1] == 1500


def test_data_pipeline_reads_trimmed_clips_and_counts_them(tmp_path, caplog):
    from mowe.recipe.hparams import dataset

    manifest = {}
    for name, seconds in (("long", 40.0), ("short", 5.0)):
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, numpy.zeros(int(seconds * RATE), dtype="float32"), RATE)
        manifest[name] = {"wav": str(path), "duration": seconds, "task": "asr",
                          "instruction": "Transcribe.", "answer": "x"}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        data = dataset(str(tmp_path / "m.json"), None, trim_seconds=30.0)
    assert len(data) == 2, "a long clip is trimmed, never dropped"
    assert "1 of 2 clips are longer than 30.0 s and are trimmed" in caplog.text
    lengths = {item["id"]: item["sig"].shape[0] for item in data}
    assert lengths == {"long": 30 * RATE, "short": 5 * RATE}
    report_dir = tmp_path / "clean"
    out = subprocess.run([sys.executable, f"{REPO}/recipes/validate_data.py", "--manifests",
                          str(tmp_path / "m.json"), "--out_dir", str(report_dir),
                          "--trim_seconds", "30"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "kept 2, skipped 0, trimmed to 30 s 1" in out.stdout
    report = json.loads((report_dir / "validation_report.json").read_text())["m.json"]
    assert report["trimmed"] == 1 and list(report["trimmed_durations"]) == ["long"]


def adapter_input(model, wav, wav_lens):
    seen = {}
    hook = model.adapter.register_forward_hook(
        lambda module, args, out: seen.update(feats=args[0], lens=args[1], tokens=out[1]))
    model.encode_audio(wav, wav_lens)
    hook.remove()
    return seen


@pytest.mark.parametrize("adapter, tokens_30s, tokens_unpadded", [("linear", 100, 100),
                                                                  ("conv", 188, 32)])
def test_30s_mode_feeds_the_adapter_all_1500_whisper_frames(tiny_models, adapter,
                                                            tokens_30s, tokens_unpadded):
    wav = torch.randn(1, 5 * RATE) * 0.1  # a 5 s clip: 250 valid Whisper frames
    padded = model_with(WhisperEncoder(tiny_models["whisper"], tiny_models["cache"],
                                       pad_to_30s=True), adapter=adapter)
    seen = adapter_input(padded, wav, torch.ones(1))
    assert seen["feats"].shape[1] == 1500 and seen["lens"].tolist() == [1500]
    assert seen["tokens"].tolist() == [tokens_30s]
    # the padding frames that reach the adapter are Whisper's own outputs on padding
    assert seen["feats"][0, 250:].abs().sum() > 0
    unpadded = model_with(WhisperEncoder(tiny_models["whisper"], tiny_models["cache"]),
                          adapter=adapter)
    seen = adapter_input(unpadded, wav, torch.ones(1))
    assert seen["feats"].shape[1] == 250 and seen["lens"].tolist() == [250]
    assert seen["tokens"].tolist() == [tokens_unpadded]


def test_linear_adapter_in_30s_mode_does_not_resample(tiny_models):
    model = model_with(WhisperEncoder(tiny_models["whisper"], tiny_models["cache"],
                                      pad_to_30s=True))
    seen = adapter_input(model, torch.randn(1, 5 * RATE) * 0.1, torch.ones(1))
    stacked = seen["feats"][0].reshape(100, -1)  # 15 consecutive frames per token
    expected = torch.nn.functional.gelu(model.adapter.linear(stacked))
    tokens, _ = model.adapter(seen["feats"], seen["lens"])
    torch.testing.assert_close(tokens[0], expected)


def test_specaugment_time_masks_fall_inside_the_valid_frames():
    torch.manual_seed(0)
    augment = SpecAugment(time_masks=2, time_width=40, freq_masks=0)
    feats = torch.randn(2, 3000, 80)
    lens = torch.tensor([500, 3000])  # a 5 s clip padded to 30 s, and a 30 s clip
    masked_in_clip, masked_total = 0, 0
    for _ in range(50):
        changed = (augment(feats.clone(), lens) != feats).any(-1)
        assert not changed[0, 500:].any(), "a time mask landed in the padding"
        masked_in_clip += int(changed[0, :500].sum())
        masked_total += int(changed[1].sum())
    assert masked_in_clip > 0 and masked_total > 0


def test_whisper_gives_specaugment_the_valid_mel_frames(tiny_models):
    augment = SpecAugment(time_masks=2, time_width=40, freq_masks=0)
    seen = []
    augment.register_forward_hook(lambda module, args, out: seen.append(args[1].tolist()))
    encoder = WhisperEncoder(tiny_models["whisper"], tiny_models["cache"], pad_to_30s=True,
                             augment=augment).train()
    encoder(torch.randn(1, 5 * RATE) * 0.1, torch.ones(1))
    assert seen == [[500]]  # 5 s of 10 ms mel frames, not the 3000 of the padded window
