"""The offline synthetic 5-task corpus (ASR, ER, AQA, SQA, AC), deterministic by seed.

Every item is made by :func:`make_item` from ``(task, split, index, seed)`` alone, so
generation parallelises over processes and two runs with one seed write identical
manifests and audio. Texts and scenes are assigned to splits by a hash of their
content, so no sentence, passage or scene appears in two splits.

Writes ``OUT/{split}/{task}/{id}.wav`` (16 kHz mono, 16-bit) and ``OUT/{split}.json``
manifests in the toolkit's schema.
"""

import json
import logging
import multiprocessing
import os

import numpy as np

from mowe.utils.atomic import write_text_atomic
from mowe.synth import scenes, speech, text
from mowe.data.tasks import TASKS  # re-exported by mowe.synth

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Items per task and split (an int, or {task: count} for tasks that need more).
SIZES = {
    "tiny": {"train": 6, "valid": 2, "test": 3},
    "small": {"train": 60, "valid": 10, "test": 20},
    # Sized so that `make demo` (two systems trained on 2 CPU cores) fits in ~30 min.
    # ASR gets 3x the sentences: trained on 100 (baseline, 2 epochs) its WER stayed close
    # to the empty answer's; more sentences helped, while more epochs over the same 100
    # only overfit.
    "default": {"train": {"asr": 300, "*": 100}, "valid": 10, "test": 30},
    # The evidence study (egs/synthetic/sweep.sh): the default training set and 100 test
    # clips per task (one clip = 1 point instead of 3.3), for multi-seed comparisons.
    "study": {"train": {"asr": 300, "*": 100}, "valid": 10, "test": 100},
    # Free-form style (STYLES): ASR on WordNet's example sentences, varied voices.
    "freeform_tiny": {"train": 6, "valid": 2, "test": 3},
    "large": {"train": {"asr": 4000, "sqa": 300, "*": 300}, "valid": 20, "test": 100},
}
# How a size's speech is made. "templates" (default): ASR and ER sentences from templates
# over ~300 words, 7 voices. "freeform": ASR speaks WordNet's example sentences
# (mowe.synth.freeform: ~34,000, split by hash), SQA speaks one and asks which spoken
# word has a given WordNet definition (~23,000 items, same split), ASR and SQA clips get
# an accent + voice variant (held-out variants speak the test split only:
# mowe.synth.speech), and a share AUGMENT_SHARE of their training clips gets noise
# and/or reverberation (mowe.synth.augment). ER, AQA and AC are made as in "templates".
STYLES = {"freeform_tiny": "freeform", "large": "freeform"}
AUGMENT_SHARE = 0.3


def style_of(size):
    """The speech style of corpus ``size`` (``templates`` or ``freeform``)."""
    return STYLES.get(size, "templates")


def items_per_task(size, split, task):
    """How many items ``task`` has in ``split`` at corpus ``size``."""
    count = SIZES[size][split]
    return count.get(task, count["*"]) if isinstance(count, dict) else count
EMOTION_LABELS = tuple(speech.EMOTIONS)


def _rng(task, split, index, seed):
    return np.random.default_rng([seed, TASKS.index(task), SPLITS.index(split), index])


def _instruction(task, rng):
    pool = text.INSTRUCTIONS[task]
    chosen = pool[int(rng.integers(len(pool)))]
    return chosen.format(labels=", ".join(EMOTION_LABELS))


def make_item(task, split, index, seed, style="templates"):
    """Audio and fields of one item: ``(audio, instruction, answer, extra)``."""
    rng = _rng(task, split, index, seed)
    if style == "freeform" and task in ("asr", "sqa"):
        return _freeform_item(task, split, rng)
    if task == "asr":
        sentence = text.sentence_in_split(rng, split)
        return speech.speak(sentence, **speech.random_voice(rng)), \
            _instruction("asr", rng), sentence, {}
    if task == "er":
        sentence = text.sentence_in_split(rng, split)
        # labels cycle with the index: every split is balanced, so the majority answerer
        # scores exactly chance and a gain over it is learning, not label skew
        emotion = EMOTION_LABELS[index % len(EMOTION_LABELS)]
        audio = speech.speak(sentence, **speech.emotional_voice(emotion, rng))
        return audio, _instruction("er", rng), emotion, {"words": sentence}
    if task == "sqa":
        passage, question, answer = text.passage_in_split(rng, split)
        return speech.speak(passage, **speech.random_voice(rng)), question, answer, \
            {"passage": passage}
    for _ in range(10000):
        audio, events, signature = scenes.make_scene(rng)
        if text.split_of(signature) == split:
            break
    else:
        raise RuntimeError(f"no {split} scene after 10000 draws")
    if task == "aqa":
        question, answer = scenes.question(events, rng)
        return audio, question, answer, {"scene": signature}
    return audio, _instruction("ac", rng), scenes.caption(events, rng), {"scene": signature}


def _freeform_item(task, split, rng):
    """An ASR clip of a WordNet sentence or an SQA clip of one with a question on the
    meaning of one of its words, spoken by an accent + voice variant, with
    noise/reverberation on a share of the training clips."""
    from mowe.synth import augment, freeform

    if task == "asr":
        words = freeform.default_pool().sentence_in_split(rng, split)
        instruction, answer, extra = _instruction("asr", rng), words, {}
    else:
        words, instruction, answer = freeform.default_questions().item_in_split(rng, split)
        extra = {"passage": words}
    voice = speech.variant_voice(rng, split)
    audio = speech.speak(words, **voice)
    extra["voice"] = voice["voice"]
    if split == "train" and rng.random() < AUGMENT_SHARE:
        audio, extra["augment"] = augment.augment(audio, rng)
    return audio, instruction, answer, extra


def _write_item(job):
    """Worker: make one item, write its wav, return its manifest entry."""
    import soundfile

    task, split, index, seed, out, style = job
    audio, instruction, answer, extra = make_item(task, split, index, seed, style)
    utt = f"{split}_{task}_{index:05d}"
    path = os.path.join(out, split, task, f"{utt}.wav")
    soundfile.write(path, np.clip(audio, -1, 1), speech.SAMPLE_RATE, subtype="PCM_16")
    entry = {"wav": path, "duration": round(len(audio) / speech.SAMPLE_RATE, 4), "task": task,
             "instruction": instruction, "answer": answer}
    entry.update(extra)
    return utt, entry


def generate_corpus(out, size="tiny", seed=0, jobs=None, progress=True, shard=None):
    """Write the corpus; return ``{split: manifest path}``.

    Arguments
    ---------
    out : str
        Output folder.
    size : str
        A key of ``SIZES`` (items per task); its speech style is ``STYLES``'s.
    seed : int
        Everything is a function of the seed.
    jobs : int, optional
        Worker processes (default: all cores).
    progress : bool
        Show a progress bar.
    shard : tuple of int, optional
        ``(j, n)``: make only every n-th item starting at the j-th (1-based) and write
        ``<split>.shard<j>of<n>.json``; :func:`merge_shards` joins the n shards (a job
        array over n machines).
    """
    from tqdm import tqdm

    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; choose one of {list(SIZES)}")
    out = os.path.abspath(out)
    work = []
    for split in SPLITS:
        for task in TASKS:
            os.makedirs(os.path.join(out, split, task), exist_ok=True)
            work += [(task, split, i, seed, out, style_of(size))
                     for i in range(items_per_task(size, split, task))]
    suffix = ""
    if shard is not None:
        index, count = shard
        if not 1 <= index <= count:
            raise ValueError(f"shard {index} of {count} does not exist")
        work = work[index - 1::count]
        suffix = f".shard{index}of{count}"
    manifests = {split: {} for split in SPLITS}
    # "spawn", not fork: forking a process whose torch/OpenMP threads are running (a
    # test session, a notebook) can deadlock the children.
    with multiprocessing.get_context("spawn").Pool(jobs or os.cpu_count()) as pool:
        results = pool.imap(_write_item, work, chunksize=4)
        for (task, split, *_), (utt, entry) in tqdm(zip(work, results), total=len(work),
                                                    desc=f"synthesizing {size} corpus",
                                                    disable=not progress):
            manifests[split][utt] = entry
    paths = {}
    for split, entries in manifests.items():
        paths[split] = os.path.join(out, f"{split}{suffix}.json")
        _write_json(paths[split], entries)
    logger.info("wrote %s", ", ".join(f"{s}: {len(m)} items" for s, m in manifests.items()))
    return paths


def _write_json(path, entries):
    """Write a manifest atomically (:func:`mowe.utils.atomic.write_text_atomic`)."""
    write_text_atomic(path, json.dumps(entries, indent=1, sort_keys=True))


def merge_shards(out, count):
    """Join ``<split>.shard<j>of<count>.json`` (j = 1..count) into ``<split>.json``.

    Raises
    ------
    FileNotFoundError
        Naming the shards that are missing (their jobs did not finish).
    """
    out = os.path.abspath(out)
    paths = {}
    for split in SPLITS:
        shards = [os.path.join(out, f"{split}.shard{j}of{count}.json")
                  for j in range(1, count + 1)]
        missing = [p for p in shards if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} shard manifest(s) missing, e.g. "
                                    f"{missing[0]}: rerun those jobs")
        entries = {}
        for path in shards:
            with open(path, encoding="utf-8") as handle:
                entries.update(json.load(handle))
        paths[split] = os.path.join(out, f"{split}.json")
        _write_json(paths[split], entries)
    return paths
