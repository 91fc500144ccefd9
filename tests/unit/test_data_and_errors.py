"""Manifests, audio loading and the errors a user sees on bad input."""

import json

import numpy as np
import pytest
import soundfile
import torch

from mowe.data import AudioError, ManifestError, load_audio, make_dataset, read_manifest
from mowe.models.llm import LanguageModel


def entry(path, **extra):
    row = {"wav": str(path), "duration": 1.0, "task": "asr", "instruction": "Transcribe.",
           "answer": "hi"}
    row.update(extra)
    return row


def test_audio_is_resampled_and_mixed_to_mono(tmp_path):
    stereo = np.stack([np.ones(8000), -np.ones(8000) * 0.5], axis=1).astype("float32")
    soundfile.write(tmp_path / "a.wav", stereo, 8000)
    signal = load_audio(str(tmp_path / "a.wav"))
    assert signal.shape == (16000,)
    assert torch.allclose(signal[100:-100], torch.full((15800,), 0.25), atol=1e-3)


def test_audio_segment_by_start_stop(tmp_path):
    soundfile.write(tmp_path / "b.wav", np.zeros(32000, dtype="float32"), 16000)
    assert load_audio(str(tmp_path / "b.wav"), start=0.5, stop=1.5).shape == (16000,)


@pytest.mark.parametrize("content,message", [
    (None, "not found"),
    (b"RIFF garbage that is no wav", "cannot read"),
])
def test_bad_audio_gives_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        load_audio(str(path))


def test_empty_audio_is_reported(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(str(tmp_path / "empty.wav"))


def test_manifest_validation(tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(str(path))
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(str(path))
    path.write_text(json.dumps({"u1": {"wav": "x.wav", "task": "asr"}}))
    with pytest.raises(ManifestError, match="u1: missing duration, instruction, answer"):
        read_manifest(str(path))


def test_dataset_yields_the_manifest_fields(tmp_path):
    soundfile.write(tmp_path / "c.wav", np.zeros(12000, dtype="float32"), 16000)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"u1": entry("{root}/c.wav")}))
    item = make_dataset(str(path), replacements={"root": str(tmp_path)})[0]
    assert item["id"] == "u1" and item["sig"].shape == (12000,)
    assert (item["task"], item["instruction"], item["answer"]) == ("asr", "Transcribe.", "hi")


def test_wrong_llm_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        LanguageModel(str(tmp_path / "missing_llm"))
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        LanguageModel(str(tmp_path), gguf_file="model.gguf")
