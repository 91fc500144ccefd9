"""Smoke check of a trained model on sentences in no corpus, spoken by espeak-ng.

What a user does first with a trained model is speak a sentence of their own to it
(``python -m mowe infer``, the server, the browser demo). This check does the same
offline: each sentence of a list is spoken with espeak-ng (:func:`mowe.synth.speech.speak`,
a voice per sentence), written as a wav, and transcribed by the model through the same
inference API the CLI uses; optionally the base Whisper's own decoder transcribes the
same clips as a reference.

Usage::

    python -m mowe smoke --model DIR --sentences FILE --out DIR [--whisper_model DIR]

``FILE`` holds one sentence per line as ``ID<TAB>VOICE<TAB>TEXT`` (``#`` starts a
comment; ``VOICE`` is an espeak-ng voice such as ``en-us+m7``). Writes ``OUT/wav/ID.wav``,
``OUT/smoke.jsonl`` (one object per sentence: ``id``, ``voice``, ``text``, ``hyp``,
``wer``, and with a Whisper model ``whisper`` and ``whisper_wer``) and ``OUT/smoke.md``, and
prints the table. ``--max_wer W`` exits with status 1 when the model's WER over all
sentences is above ``W`` (a gate for a model that should transcribe).
"""

import argparse
import json
import logging
import os
import re
import sys

from mowe.utils.atomic import OutputPathError, write_text_atomic

logger = logging.getLogger(__name__)
ASR_INSTRUCTION = "Transcribe the speech in this audio."


class SentenceListError(ValueError):
    """A sentence list that cannot be used; the message names the file and line."""


def read_sentences(path):
    """``[(id, voice, text)]`` from a ``ID<TAB>VOICE<TAB>TEXT`` file.

    Raises
    ------
    SentenceListError
        Missing file, a line without three tab-separated fields, a repeated id, or no
        sentence at all.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise SentenceListError(f"cannot read the sentence list {path}: "
                                f"{error.strerror or error}") from error
    sentences, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 3 or not all(fields):
            raise SentenceListError(f"{path}:{number}: expected ID<TAB>VOICE<TAB>TEXT, "
                                    f"got {line!r}")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", fields[0]):
            raise SentenceListError(f"{path}:{number}: id {fields[0]!r} must be a plain name "
                                    "(letters, digits, _ . -, not starting with a dot): it "
                                    "names the clip's wav file inside the output folder")
        if fields[0] in seen:
            raise SentenceListError(f"{path}:{number}: id {fields[0]!r} is used twice")
        seen.add(fields[0])
        sentences.append(tuple(fields))
    if not sentences:
        raise SentenceListError(f"{path} holds no sentence")
    return sentences


def speak_sentences(sentences, wav_dir):
    """Speak every sentence with its voice; ``{id: wav path}`` (16 kHz, 16-bit)."""
    import numpy as np
    import soundfile

    from mowe.synth import speech

    os.makedirs(wav_dir, exist_ok=True)
    paths = {}
    for utt, voice, text in sentences:
        audio = speech.speak(text, voice=voice)
        paths[utt] = os.path.join(wav_dir, f"{utt}.wav")
        # ids are checked by read_sentences; a caller's own list must also stay inside
        if os.path.dirname(os.path.normpath(paths[utt])) != os.path.normpath(wav_dir):
            raise SentenceListError(f"id {utt!r} would write outside {wav_dir}")
        soundfile.write(paths[utt], np.clip(audio, -1, 1), speech.SAMPLE_RATE,
                        subtype="PCM_16")
    return paths


def sentence_wer(hyp, text):
    """AudioBench-normalised WER of one transcript (a fraction)."""
    from mowe.scoring.wer import corpus_wer

    return corpus_wer([hyp], [text]).wer


def smoke_table(rows_by_system):
    """Markdown: each sentence, what was said, and each system's transcript with its WER.

    Parameters
    ----------
    rows_by_system : dict
        system name -> the rows of its ``smoke.jsonl``. The Whisper column comes from
        the first system whose rows carry ``whisper``.
    """
    from mowe.scoring.wer import corpus_wer

    systems = list(rows_by_system)
    first = rows_by_system[systems[0]]
    with_whisper = next((rows for rows in rows_by_system.values()
                         if rows and "whisper" in rows[0]), None)
    columns = (["Whisper decoder"] if with_whisper else []) + systems
    lines = ["| id | voice | said | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for index, row in enumerate(first):
        cells = []
        if with_whisper:
            reference = with_whisper[index]
            cells.append(f"{reference['whisper']} ({100 * reference['whisper_wer']:.0f}%)")
        cells += [f"{rows[index]['hyp']} ({100 * rows[index]['wer']:.0f}%)"
                  for rows in rows_by_system.values()]
        lines.append(f"| {row['id']} | {row['voice']} | {row['text']} | "
                     + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    texts = [row["text"] for row in first]
    totals = ([corpus_wer([r["whisper"] for r in with_whisper], texts).wer]
              if with_whisper else [])
    totals += [corpus_wer([r["hyp"] for r in rows], texts).wer
               for rows in rows_by_system.values()]
    lines.append("| all | | WER | " + " | ".join(f"{100 * wer:.1f}%" for wer in totals) + " |")
    return "\n".join(lines) + "\n"


def run_smoke(model, sentences, out_dir, whisper_model=None, device="cpu"):
    """Speak, transcribe and score ``sentences``; write ``smoke.jsonl``/``smoke.md``.

    Parameters
    ----------
    model : mowe.inference.api.AudioLLMInference
        The trained model.
    sentences : list of (str, str, str)
        ``(id, voice, text)`` (:func:`read_sentences`).
    out_dir : str
        Output folder.
    whisper_model : str, optional
        A Whisper folder with its decoder: its transcripts are added as a reference.
    device : str
        Device of the Whisper reference.

    Returns
    -------
    list of dict
        The rows written to ``smoke.jsonl``.
    """
    wavs = speak_sentences(sentences, os.path.join(out_dir, "wav"))
    signals = [model.load(wavs[utt]) for utt, _, _ in sentences]
    answers = model.answer_signals(signals, [ASR_INSTRUCTION] * len(signals))
    rows = [{"id": utt, "voice": voice, "text": text, "wav": wavs[utt],
             "hyp": answer.text, "wer": sentence_wer(answer.text, text)}
            for (utt, voice, text), answer in zip(sentences, answers)]
    if whisper_model:
        from mowe.scoring.whisper_reference import load_whisper, transcribe

        whisper, processor = load_whisper(whisper_model, device=device)
        for row, hyp in zip(rows, transcribe(whisper, processor, signals)):
            row["whisper"], row["whisper_wer"] = hyp, sentence_wer(hyp, row["text"])
    write_text_atomic(os.path.join(out_dir, "smoke.jsonl"),
                      "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    write_text_atomic(os.path.join(out_dir, "smoke.md"),
                      smoke_table({model.name: rows}))
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="mowe smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="packaged model folder or experiment folder of one system")
    parser.add_argument("--sentences", required=True,
                        help="ID<TAB>VOICE<TAB>TEXT lines (e.g. egs/synthetic/local/"
                             "smoke_sentences.tsv)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--whisper_model", default=None,
                        help="a Whisper folder: transcribe the clips with its decoder too")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default: cpu)")
    parser.add_argument("--max_wer", type=float, default=None,
                        help="exit 1 when the model's WER over all sentences (a fraction) "
                             "is above this")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    from mowe.inference.api import AudioLLMInference
    from mowe.scoring.wer import corpus_wer
    from mowe.synth.speech import SpeechSynthesisError

    try:
        sentences = read_sentences(args.sentences)
    except SentenceListError as error:
        sys.exit(f"error: {error}")
    if args.whisper_model and not os.path.isdir(args.whisper_model):
        sys.exit(f"error: --whisper_model {args.whisper_model} is not a folder")
    try:
        model = AudioLLMInference.from_pretrained(args.model, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"error: cannot load {args.model}: {error}")
    try:
        rows = run_smoke(model, sentences, args.out, args.whisper_model, args.device)
    except (SpeechSynthesisError, OutputPathError) as error:
        sys.exit(f"error: {error}")
    print(open(os.path.join(args.out, "smoke.md"), encoding="utf-8").read(), end="")
    wer = corpus_wer([row["hyp"] for row in rows], [row["text"] for row in rows]).wer
    if args.max_wer is not None and wer > args.max_wer:
        print(f"error: WER {100 * wer:.1f}% on the smoke sentences is above --max_wer "
              f"{100 * args.max_wer:.1f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
