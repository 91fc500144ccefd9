"""The inference API, the CLI and the packed folder, on a tiny system trained, decoded and
packed by the real entry points (conftest's ``tiny_package``)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from conftest import REPO

ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)


@pytest.fixture(scope="module")
def model(tiny_package):
    from mowe.inference.api import AudioLLMInference

    return AudioLLMInference.from_pretrained(str(tiny_package["package"]))


def test_package_folder_holds_what_the_issue_lists(tiny_package):
    from safetensors.torch import load_file

    folder = tiny_package["package"]
    names = set(os.listdir(folder))
    assert {"hyperparams.yaml", "model.safetensors", "mowe_package.json", "tokenizer",
            "README.md"} <= names
    assert not any(name.endswith((".ckpt", ".pt", ".bin")) for name in names)
    info = json.loads((folder / "mowe_package.json").read_text())
    assert set(info["sources"]) == {"base_encoder_source", "llm_source"}
    for record in info["sources"].values():
        assert record["kind"] == "local" and len(record["sha256"]["model.safetensors"]) == 64
    weights = load_file(str(folder / "model.safetensors"))
    # the frozen LLM and base encoder weights are not stored; LoRA, mixture, adapter are
    assert not any(k.startswith("llm.") and "lora_" not in k for k in weights)
    assert not any(k.startswith("base_encoder.") and k.endswith("weight") for k in weights)
    assert any("lora_A" in k for k in weights) and any(k.startswith("mixture.") for k in weights)
    spec = (folder / "hyperparams.yaml").read_text()
    assert "source: !ref <llm_source>" in spec and "source: !ref <base_encoder_source>" in spec
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "license: apache-2.0" in front and "library_name: mowe" in front
    assert "tiny-test" in front and "from_pretrained" in card


def test_api_equals_decode_py_batched_and_one_by_one(model, tiny_package):
    rows = tiny_package["hyps"]
    wavs = [row["wav"] for row in rows]
    instructions = [row["instruction"] for row in rows]
    batched = model.answer(wavs, instructions, return_selected=True)
    assert [a.text for a in batched] == [row["hyp"] for row in rows]
    assert [a.selected for a in batched] == [row["selected"] for row in rows]
    assert batched[0].routers == rows[0]["routers"]
    for row in rows:
        assert model.answer(row["wav"], row["instruction"]) == row["hyp"]
    # another batch composition (all six at once) gives the same answers
    assert model.answer(wavs, instructions, batch_size=6) == [row["hyp"] for row in rows]


def test_api_takes_waveforms_at_any_rate_and_any_format(model, tiny_package, tmp_path):
    row = tiny_package["hyps"][0]
    samples, rate = soundfile.read(row["wav"], dtype="float32")
    assert model.answer((samples, rate), row["instruction"]) == row["hyp"]
    assert model.answer(torch.from_numpy(samples), row["instruction"],
                        sample_rate=rate) == row["hyp"]
    stereo = np.stack([samples, samples])  # channels x samples, averaged to mono
    assert model.answer(stereo, row["instruction"], sample_rate=rate) == row["hyp"]
    # 8 kHz and mp3 (through ffmpeg): answered (not necessarily identically)
    import torchaudio

    low = torchaudio.functional.resample(torch.from_numpy(samples), 16000, 8000)
    assert isinstance(model.answer((low.numpy(), 8000), "Transcribe the speech."), str)
    mp3 = tmp_path / "clip.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", row["wav"], "-ar", "44100",
                    str(mp3)], check=True)
    assert isinstance(model.answer(str(mp3), "Transcribe the speech."), str)


def test_api_decoding_options(model, tiny_package):
    row = tiny_package["hyps"][0]
    beam = model.answer(row["wav"], row["instruction"], num_beams=3, max_new_tokens=4)
    sampled = [model.answer(row["wav"], row["instruction"], do_sample=True, temperature=1.5,
                            top_p=0.9, seed=3) for _ in range(2)]
    assert isinstance(beam, str) and sampled[0] == sampled[1]  # seeded sampling repeats
    penalised = model.answer(row["wav"], row["instruction"], repetition_penalty=1.3)
    assert isinstance(penalised, str)
    for bad in ({"num_beams": 0}, {"max_new_tokens": "5"}, {"top_p": 1.5},
                {"temperature": 0}, {"do_sample": "yes"}, {"beam_size": 2}):
        with pytest.raises(ValueError):
            model.answer(row["wav"], row["instruction"], **bad)


def test_api_refuses_bad_audio(model, tmp_path):
    from mowe.data.audio import AudioError

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not a wav at all")
    with pytest.raises(AudioError, match="cannot read"):
        model.answer(str(broken), "Transcribe.")
    with pytest.raises(AudioError, match="not found"):
        model.answer(str(tmp_path / "missing.wav"), "Transcribe.")
    with pytest.raises(AudioError, match="sample rate"):
        model.answer(np.zeros(1600, dtype="float32"), "Transcribe.")
    with pytest.raises(AudioError, match="NaN"):
        model.answer((np.full(1600, np.nan, dtype="float32"), 16000), "Transcribe.")
    with pytest.raises(AudioError, match="at most 30 s"):
        model.answer((np.zeros(16000 * 31, dtype="float32"), 16000), "Transcribe.")
    with pytest.raises(ValueError, match="instructions"):
        model.answer([np.zeros(1600)] * 2, ["a", "b", "c"], sample_rate=16000)


def test_experiment_folder_loads_like_the_package(tiny_package):
    from mowe.inference.api import AudioLLMInference

    rows = tiny_package["hyps"][:2]
    exp_model = AudioLLMInference.from_pretrained(str(tiny_package["exp"]))
    assert exp_model.answer([r["wav"] for r in rows], [r["instruction"] for r in rows]) == \
        [r["hyp"] for r in rows]


def test_frozen_sources_are_checked_and_can_move(tiny_package, tmp_path):
    from mowe.inference.api import AudioLLMInference
    from mowe.provision.model_sources import SourceMismatchError

    package, pretrained = str(tiny_package["package"]), tiny_package["pretrained"]
    row = tiny_package["hyps"][0]
    moved = tmp_path / "elsewhere"
    shutil.copytree(pretrained / "smollm2-135m-instruct", moved)
    model = AudioLLMInference.from_pretrained(package, sources={"llm_source": str(moved)})
    assert model.answer(row["wav"], row["instruction"]) == row["hyp"]
    # other weights under the same name: refused with both hashes named
    from mowe.utils.tiny_models import make_tiny_llama

    other = make_tiny_llama(str(tmp_path / "other"), seed=1, initializer_range=0.3)
    with pytest.raises(SourceMismatchError, match="sha256"):
        AudioLLMInference.from_pretrained(package, sources={"llm_source": other})
    with pytest.raises(FileNotFoundError, match="not a directory"):
        AudioLLMInference.from_pretrained(package, sources={"llm_source": str(tmp_path / "no")})
    with pytest.raises(ValueError, match="unknown source keys"):
        AudioLLMInference.from_pretrained(package, sources={"vocoder_source": other})
    with pytest.raises(FileNotFoundError, match="neither a packaged"):
        AudioLLMInference.from_pretrained(str(tmp_path))


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "mowe.inference.ask", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=REPO)


def test_cli_json_lines_equal_decode_py_and_report_bad_clips(tiny_package, tmp_path):
    rows = [row for row in tiny_package["hyps"] if row["task"] == "asr"]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"garbage")
    result = run_cli("--model", str(tiny_package["package"]), *[r["wav"] for r in rows],
                     str(broken), "--instruction", rows[0]["instruction"], "--json")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["answer"] for line in lines[:-1]] == [r["hyp"] for r in rows]
    assert [line["selected"] for line in lines[:-1]] == [r["selected"] for r in rows]
    assert lines[-1]["audio"] == str(broken) and "cannot read" in lines[-1]["error"]
    assert f"error: {broken}" in result.stderr


def test_cli_errors_are_one_line(tiny_package, tmp_path):
    result = run_cli("--model", str(tmp_path), "x.wav", "--instruction", "Hi")
    assert result.returncode != 0 and "neither a packaged" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("--model", str(tiny_package["package"]), tiny_package["hyps"][0]["wav"],
                     "--instruction", "Hi", "--num_beams", "0")
    assert result.returncode != 0 and "num_beams must be a positive integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["mowe.inference.ask", "mowe.inference.pack", "mowe.inference.model_server", "mowe.inference.web_demo"])
def test_entry_points_have_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                            text=True, env=ENV, timeout=120)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr
    assert "--model" in result.stdout or "--exp_dir" in result.stdout


def test_push_to_hub_offline_is_a_clear_error(tiny_package):
    result = subprocess.run([sys.executable, "-c",
                             "from mowe.inference.pack import push_to_hub; "
                             f"push_to_hub({str(tiny_package['package'])!r}, 'me/model')"],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode != 0 and "HF_HUB_OFFLINE" in result.stderr
    assert "Traceback" not in result.stderr
