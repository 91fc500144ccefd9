"""Transcribe a test set's ASR clips with a Whisper model's own decoder: the reference
that shows how much of the base encoder's knowledge reaches the AudioLLM.

Usage::

    python -m mowe whisper-reference --manifest data/clean/test.json \\
        --model pretrained/whisper-tiny.en --hyp_file exp/TAG/whisper_decoder/hyps.jsonl

Writes the AudioLLM's hypothesis format (``{"id", "task", "instruction", "hyp", "ref",
"selected": null, "routers": []}`` per line, ASR clips only), so that
``python -m mowe score --hyp_file ... --tasks asr`` scores it with the very same
normalisation and WER as the AudioLLM. Greedy decoding through transformers' Whisper
``generate`` (as the AudioLLM decodes); a multilingual model is forced to English
transcription (``--language``). ``--fallback``: Whisper's own guard against loops
("W-W-W-..." on unfamiliar voices), temperature fallback as in OpenAI's ``transcribe``:
a transcript whose token compression ratio is above 1.35 (transformers' recommended value
for its token-based ratio) or whose mean log-probability is below -1 is decoded again at
temperature 0.2, 0.4, ... 1.0 (sampling seeded by ``--seed``, so reruns agree).
Clips whose audio cannot be read are skipped and counted (a log line names each), as
are manifest entries that fail validation.
"""

import argparse
import json
import logging
import os
import sys

import torch
from tqdm import tqdm

from mowe.utils.atomic import OutputPathError, check_writable, write_text_atomic
from mowe.data.audio import AudioError, load_audio
from mowe.data.manifest import ManifestError, load_manifest_entries
from mowe.provision.model_sources import check_local_source

logger = logging.getLogger(__name__)


def load_whisper(source, device="cpu"):
    """(model, processor) of a Whisper checkpoint with its decoder (hub id or folder)."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    local = check_local_source(source, "Whisper model")
    kwargs = {"local_files_only": True} if local else {}
    processor = WhisperProcessor.from_pretrained(source, **kwargs)
    model = WhisperForConditionalGeneration.from_pretrained(source, **kwargs)
    return model.to(device).eval(), processor


FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def transcribe(model, processor, waves, language="en", max_new_tokens=128, fallback=False):
    """Transcriptions of ``waves`` (1-D 16 kHz float tensors), one batch: greedy, or with
    ``fallback`` greedy with temperature fallback (module docstring)."""
    features = processor.feature_extractor([w.numpy() for w in waves], sampling_rate=16000,
                                           return_tensors="pt").input_features
    kwargs = {}
    if fallback:
        kwargs.update(temperature=FALLBACK_TEMPERATURES, compression_ratio_threshold=1.35,
                      logprob_threshold=-1.0)
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(language=language, task="transcribe")
    with torch.no_grad():
        ids = model.generate(features.to(model.device), max_new_tokens=max_new_tokens,
                             **kwargs)
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def reference_hypotheses(manifest, model, processor, tasks=("asr",), batch_size=8,
                         language="en", progress=True, fallback=False, seed=0):
    """Hypothesis rows of the Whisper decoder for ``manifest``'s clips of ``tasks``, and
    the ``{id: reason}`` of clips left out (bad entry or unreadable audio)."""
    entries, skipped = load_manifest_entries(manifest)
    chosen = [(key, entry) for key, entry in entries.items() if entry["task"] in tasks]
    rows = []
    bar = tqdm(total=len(chosen), desc="Whisper decoder", disable=not progress)
    for start in range(0, len(chosen), batch_size):
        chunk, batch, waves = chosen[start:start + batch_size], [], []
        for key, entry in chunk:
            try:
                waves.append(load_audio(entry["wav"], start=entry.get("start"),
                                        stop=entry.get("stop")))
                batch.append((key, entry))
            except AudioError as error:
                skipped[key] = str(error)
                logger.warning("skipping %s: %s", key, error)
        if batch:
            torch.manual_seed(seed + start)  # fallback samples: the same on a rerun
            hyps = transcribe(model, processor, waves, language, fallback=fallback)
            for (key, entry), hyp in zip(batch, hyps):
                rows.append({"id": key, "task": entry["task"],
                             "instruction": entry["instruction"], "hyp": hyp,
                             "ref": entry["answer"], "selected": None, "routers": []})
        bar.update(len(chunk))
    bar.close()
    return rows, skipped


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="test manifest (JSON)")
    parser.add_argument("--model", required=True,
                        help="Whisper folder with its decoder (e.g. pretrained/whisper-tiny.en)"
                             " or hub id")
    parser.add_argument("--hyp_file", required=True, help="output JSON lines")
    parser.add_argument("--tasks", nargs="+", default=["asr"],
                        help="tasks whose clips are transcribed (default: asr)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--language", default="en",
                        help="forced language of a multilingual model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fallback", action="store_true",
                        help="temperature fallback against repetition loops (OpenAI's "
                             "transcribe defaults; default: greedy only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fallback's sampling")
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.batch_size < 1:
        sys.exit("error: --batch_size must be at least 1")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.hyp_file)), exist_ok=True)
        check_writable(args.hyp_file)
        model, processor = load_whisper(args.model, args.device)
        rows, skipped = reference_hypotheses(args.manifest, model, processor, args.tasks,
                                             args.batch_size, args.language,
                                             fallback=args.fallback, seed=args.seed)
    except (ManifestError, OutputPathError, FileNotFoundError, OSError) as error:
        sys.exit(f"error: {error}")
    if not rows:
        sys.exit(f"error: {args.manifest} has no readable clip of tasks {args.tasks}")
    write_text_atomic(args.hyp_file, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"Whisper decoder ({args.model}): {len(rows)} clips transcribed, "
          f"{len(skipped)} skipped -> {args.hyp_file}")
    for key, reason in list(skipped.items())[:10]:
        print(f"  skipped {key}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
