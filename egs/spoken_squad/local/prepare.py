#!/usr/bin/env python3
"""Spoken-SQuAD -> spoken question answering (SQA) manifests (``OUT/{train,valid,test}.json``).

Reads the official release::

    spoken_train-v1.1.json, spoken_test-v1.1.json     SQuAD v1.1 format
        data[t].paragraphs[p].qas[].question / answers[].text
    <wav folder>/.../<t>_<p>_<s>.wav                  one wav per sentence

The sentence wavs of a paragraph (``t`` = topic index, ``p`` = paragraph index in the
JSON) are concatenated in sentence order, as 16 kHz mono, into
``OUT/wav/<split>/<t>_<p>.wav`` (parallel, resumable). Train and test wavs share names,
so a wav belongs to the split whose keyword occurs in its folder path (train; test or
dev), unless ``--train_wav_folder``/``--test_wav_folder`` name the folders.

One entry per question: the instruction is the question (or, with
``--wrap_questions``, the question inside a phrase of the SQA pool), the answer is the
first answer text, all answer texts are in ``"answers"``. The validation split is a
deterministic ``--valid_fraction`` of the train paragraphs.

Skipped (see ``OUT/prepare_report.json``): paragraphs without sentence wavs or with gaps
in the sentence numbers (the report names the missing sentences), unreadable wavs,
questions without answers, durations outside the filter. A missing *last* sentence
cannot be detected from the file names.

Example::

    python egs/spoken_squad/local/prepare.py --data_folder /corpora/Spoken-SQuAD \\
        --save_folder data/spoken_squad
"""

import os
import re
import sys

try:
    import mowe  # noqa: F401
except ImportError:  # not installed: use the checkout this script belongs to
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from mowe.data import prepare as prep
from mowe.data import prepare_audio as prep_audio
from mowe.data import audiobench
from mowe.data.instructions import draw_instruction

TASK = "sqa"
SENTENCE_WAV = re.compile(r"^(\d+)_(\d+)_(\d+)\.wav$", re.IGNORECASE)
SPLIT_KEYWORDS = {"train": ("train",), "test": ("test", "dev")}


def parse_args(argv=None):
    """The parsed command line (``--help`` lists the options)."""
    parser = prep.make_parser(__doc__)
    parser.add_argument("--data_folder", required=True,
                        help="the Spoken-SQuAD folder with the JSON files")
    parser.add_argument("--train_json", default="spoken_train-v1.1.json",
                        help="train JSON, relative to --data_folder (default: %(default)s)")
    parser.add_argument("--test_json", default="spoken_test-v1.1.json",
                        help="test JSON, relative to --data_folder (default: %(default)s)")
    parser.add_argument("--wav_folder", default=None,
                        help="folder searched for the sentence wavs (default: --data_folder)")
    parser.add_argument("--train_wav_folder", default=None,
                        help="folder of the train sentence wavs (default: found by keyword)")
    parser.add_argument("--test_wav_folder", default=None,
                        help="folder of the test sentence wavs (default: found by keyword)")
    parser.add_argument("--valid_fraction", type=float, default=0.05,
                        help="fraction of train paragraphs held out for validation "
                             "(default: %(default)s)")
    parser.add_argument("--wrap_questions", action="store_true",
                        help="wrap each question in an instruction from the SQA pool")
    prep.add_common_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.valid_fraction < 1:
        parser.error("--valid_fraction must be in [0, 1)")
    return args


def sentence_wavs(folder, split=None, root=None):
    """``{(topic, paragraph): {sentence: path}}`` of the sentence wavs under ``folder``.

    With ``split`` and ``root``, only wavs whose folder path (below ``root``) carries
    that split's keyword are taken.
    """
    paragraphs = {}
    for name, paths in prep.index_files(folder, (".wav",)).items():
        match = SENTENCE_WAV.match(name)
        if not match:
            continue
        for path in paths:
            if split and prep.split_of_path(path, root, SPLIT_KEYWORDS) != split:
                continue
            topic, paragraph, sentence = map(int, match.groups())
            paragraphs.setdefault((topic, paragraph), {})[sentence] = path
    return paragraphs


def wav_index(split, args):
    """The sentence wavs of ``split``, or a clear error when there are none."""
    explicit = getattr(args, f"{split}_wav_folder")
    if explicit:
        found = sentence_wavs(prep.require_folder(explicit, f"--{split}_wav_folder"))
        where = explicit
    else:
        root = prep.require_folder(args.wav_folder or args.data_folder, "--wav_folder")
        found = sentence_wavs(root, split, root)
        where = f"{root} (in folders named like '{SPLIT_KEYWORDS[split][0]}')"
    if not found:
        raise prep.PrepareError(f"no {split} sentence wavs (<topic>_<paragraph>_<sentence>.wav)"
                                f" under {where}; give --{split}_wav_folder")
    return found


def read_questions(json_path):
    """Questions of a SQuAD-format JSON, per paragraph.

    Returns
    -------
    dict
        ``{(topic, paragraph): (questions, rejected)}`` with ``questions`` a list of
        ``(id, question, answers)`` and ``rejected`` a list of ``(id, reason)``.
    """
    data = prep.read_json(json_path, "Spoken-SQuAD JSON")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise prep.PrepareError(f"{json_path} is not in SQuAD format (no 'data' list)")
    paragraphs = {}
    for topic, article in enumerate(data["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs", []), list):
            raise prep.PrepareError(f"{json_path}: data[{topic}] is not a SQuAD article "
                                    "(an object with a 'paragraphs' list)")
        for index, paragraph in enumerate(article.get("paragraphs", [])):
            questions, rejected = paragraphs.setdefault((topic, index), ([], []))
            if not isinstance(paragraph, dict):
                rejected.append((f"{topic}_{index}", "paragraph is not an object"))
                continue
            for number, qa in enumerate(paragraph.get("qas", [])):
                if not isinstance(qa, dict):
                    rejected.append((f"{topic}_{index}_q{number}", "question is not an object"))
                    continue
                qa_id = str(qa.get("id") or f"{topic}_{index}_q{number}")
                answers = [str(a.get("text", "")).strip() for a in qa.get("answers", [])
                           if isinstance(a, dict)]
                answers = [text for text in answers if text]
                question = (qa.get("question") or "").strip()
                if not question:
                    rejected.append((qa_id, "empty question"))
                elif not answers:
                    rejected.append((qa_id, "no answer"))
                else:
                    questions.append((qa_id, question, answers))
    return paragraphs


def held_out(paragraph_keys, fraction, seed):
    """The deterministic set of train paragraphs that form the validation split."""
    keys = sorted(paragraph_keys)
    count = round(fraction * len(keys))
    if fraction > 0 and len(keys) > 1:
        count = min(max(count, 1), len(keys) - 1)
    return set(prep.split_rng(seed, "valid").sample(keys, count)) if count else set()


def missing_sentences(sentences):
    """Sentence numbers absent between 0 and the highest one present."""
    return [number for number in range(max(sentences) + 1) if number not in sentences]


def split_entries(split, paragraphs, wavs, args, report):
    """Concatenate the paragraphs' audio and return the entries of their questions."""
    jobs = {}
    for key, (questions, rejected) in sorted(paragraphs.items()):
        name = f"{key[0]}_{key[1]}"
        for qa_id, reason in rejected:
            report.skip(split, qa_id, reason)
        if not questions:
            continue
        sentences = wavs.get(key)
        gaps = missing_sentences(sentences) if sentences else None
        if not sentences or gaps:
            reason = (f"missing sentence wavs: {name}: sentences "
                      f"{', '.join(map(str, gaps))}" if sentences
                      else f"missing sentence wavs: {name}: none found")
            for qa_id, _, _ in questions:
                report.skip(split, qa_id, reason)
            continue
        target = os.path.join(os.path.abspath(args.save_folder), "wav", split, f"{name}.wav")
        jobs[key] = ([sentences[s] for s in sorted(sentences)], target)
    durations = prep_audio.run_parallel(
        _concatenate, list(jobs.values()), args.jobs, desc=f"{split} paragraphs",
        other_shard_result=prep.AudioReadError("concatenated by another shard job"))
    duration_filter = prep_audio.DurationFilter.from_args(args)
    rng = prep.split_rng(args.seed, split)
    entries = {}
    for key, duration in zip(jobs, durations):
        duration, reason = prep_audio.checked_duration(duration, duration_filter)
        for qa_id, question, answers in paragraphs[key][0]:
            instruction = (draw_instruction(TASK, rng, question=question)
                           if args.wrap_questions else question)
            if reason:
                report.skip(split, qa_id, reason)
            elif qa_id in entries:
                report.skip(split, qa_id, "duplicate id")
            else:
                entries[qa_id] = prep.make_entry(jobs[key][1], duration, TASK, instruction,
                                                 answers[0], answers=answers,
                                                 paragraph=f"{key[0]}_{key[1]}")
    return entries


def _concatenate(job):
    """Concatenate one paragraph; return its duration or the AudioReadError."""
    sources, target = job
    try:
        return prep_audio.concatenate_to_wav(sources, target)
    except prep.AudioReadError as error:
        return error


def audiobench_test(args, report):
    """The AudioBench Spoken-SQuAD test set (its instruction is the question)."""
    rng = prep.split_rng(args.seed, "test")

    def instruction(question):
        return draw_instruction(TASK, rng, question=question) if args.wrap_questions \
            else question

    return audiobench.prepare_audiobench_test(args, TASK, report, instruction=instruction)


def main(argv=None):
    """Write ``{train,valid,test}.json``, the paragraph wavs and ``prepare_report.json``."""
    args = parse_args(argv)
    args.data_folder = prep.require_folder(args.data_folder, "--data_folder")
    train = read_questions(os.path.join(args.data_folder, args.train_json))
    valid_keys = held_out(train, args.valid_fraction, args.seed)
    splits = {"train": {k: v for k, v in train.items() if k not in valid_keys},
              "valid": {k: v for k, v in train.items() if k in valid_keys}}
    wavs = {"train": wav_index("train", args)}
    if not args.audiobench_test:
        splits["test"] = read_questions(os.path.join(args.data_folder, args.test_json))
        wavs["test"] = wav_index("test", args)
    wavs["valid"] = wavs["train"]
    prep.write_splits(args.save_folder, splits,
                      lambda split, report: split_entries(split, splits[split], wavs[split], args, report),
                      lambda report: audiobench_test(args, report))


if __name__ == "__main__":
    prep.run_main(main)
