"""The synthetic 5-task corpus: determinism, disjoint splits, content."""

import hashlib
import json
import os
import re

import pytest
import soundfile

from mowe.synth import TASKS, generate_corpus
from mowe.synth.__main__ import main as synth_main
from mowe.synth.speech import EMOTIONS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return str(out), generate_corpus(str(out), "tiny", seed=3, jobs=2, progress=False)


def load(paths):
    return {split: json.load(open(path)) for split, path in paths.items()}


def audio_hashes(manifest):
    return {utt: hashlib.sha256(open(e["wav"], "rb").read()).hexdigest()
            for utt, e in manifest.items()}


def test_every_task_and_split_with_16k_mono_audio(corpus):
    _, paths = corpus
    manifests = load(paths)
    assert {len(m) for m in manifests.values()} == {30, 10, 15}
    for manifest in manifests.values():
        assert {e["task"] for e in manifest.values()} == set(TASKS)
        for entry in manifest.values():
            info = soundfile.info(entry["wav"])
            assert info.samplerate == 16000 and info.channels == 1
            assert entry["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
            assert entry["instruction"] and entry["answer"]
    er = [e["answer"] for m in manifests.values() for e in m.values() if e["task"] == "er"]
    assert set(er) <= set(EMOTIONS) and len(EMOTIONS) >= 4


def test_same_seed_same_corpus_other_seed_differs(corpus, tmp_path):
    out, paths = corpus
    again = generate_corpus(str(tmp_path / "again"), "tiny", seed=3, jobs=1, progress=False)
    first, second = load(paths), load(again)
    for split in first:
        strip = lambda m: {u: {k: v for k, v in e.items() if k != "wav"} for u, e in m.items()}
        assert strip(first[split]) == strip(second[split])
        assert audio_hashes(first[split]) == audio_hashes(second[split])
    other = load(generate_corpus(str(tmp_path / "other"), "tiny", seed=4, progress=False))
    assert audio_hashes(other["test"]) != audio_hashes(first["test"])


def test_splits_share_no_sentence_passage_or_scene(tmp_path):
    manifests = load(generate_corpus(str(tmp_path), "tiny", seed=11, progress=False))

    def contents(split):
        items = set()
        for entry in manifests[split].values():
            if entry["task"] == "asr":
                items.add(("text", entry["answer"]))
            for key in ("words", "passage", "scene"):
                if key in entry:
                    items.add((key, entry[key]))
        return items

    train, valid, test = contents("train"), contents("valid"), contents("test")
    assert train and valid and test
    assert not train & test and not train & valid and not valid & test


def test_cli_help_and_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_main(["--help"])
    assert exit_info.value.code == 0
    assert synth_main(["--out", str(tmp_path), "--size", "tiny", "--jobs", "2"]) == 0
    assert os.path.isfile(tmp_path / "test.json")


def test_freeform_style_wordnet_sentences_held_out_voices_and_augmentation(tmp_path):
    """Sizes of the "freeform" style: ASR speaks WordNet's example sentences (split by
    hash, so no sentence is in two splits), ASR and SQA clips are spoken by accent +
    variant voices with the held-out variants on test clips only, and a share of their
    training clips is noisy or reverberant; the corpus is still a function of its seed."""
    import numpy as np

    from mowe.synth import augment, corpus, freeform, speech

    assert corpus.style_of("freeform_tiny") == "freeform" and corpus.style_of("default") \
        == "templates"
    pool = freeform.default_pool()
    sizes = {split: len(pool.sentences(split)) for split in ("train", "valid", "test")}
    assert sum(sizes.values()) > 30000 and min(sizes.values()) > 2000, sizes
    lowered = {s: {x.lower() for x in pool.sentences(s)} for s in sizes}
    assert not lowered["train"] & lowered["test"] and not lowered["valid"] & lowered["test"]
    questions = freeform.default_questions()
    assert min(len(questions.triples(s)) for s in sizes) > 2000

    # 8 training clips per task: enough for the 30 % augmentation share to show up
    corpus.SIZES["freeform_pytest"] = {"train": 8, "valid": 2, "test": 3}
    corpus.STYLES["freeform_pytest"] = "freeform"
    try:
        manifests = load(generate_corpus(str(tmp_path / "a"), "freeform_pytest", seed=5,
                                         jobs=2, progress=False))
        again = load(generate_corpus(str(tmp_path / "b"), "freeform_pytest", seed=5,
                                     jobs=1, progress=False))
    finally:
        del corpus.SIZES["freeform_pytest"], corpus.STYLES["freeform_pytest"]
    for split, manifest in manifests.items():
        asr = [e for e in manifest.values() if e["task"] == "asr"]
        wordnet = set(pool.sentences(split))
        assert asr and all(e["answer"] in wordnet for e in asr), split
        # SQA: a WordNet sentence of the same split is spoken; the question gives the
        # definition of one of its words and the answer is that word, heard in the audio
        questions = {t[0]: t for t in freeform.default_questions().triples(split)}
        sqa = [e for e in manifest.values() if e["task"] == "sqa"]
        assert sqa and all(e["passage"] in wordnet for e in sqa), split
        for entry in sqa:
            sentence, word, definition = questions[entry["passage"]]
            assert entry["answer"] == word and word.lower() in sentence.lower()
            assert definition in entry["instruction"]
            assert not re.search(rf"\b{re.escape(word)}\b", definition, re.IGNORECASE)
        for entry in manifest.values():
            if entry["task"] not in ("asr", "sqa"):
                assert "voice" not in entry  # the other tasks are made as before
                continue
            accent, variant = entry["voice"].split("+")
            assert accent in speech.ACCENTS
            held_out = variant in speech.HELD_OUT_VARIANTS
            assert held_out == (split == "test"), (split, entry["voice"])
            assert soundfile.info(entry["wav"]).samplerate == 16000
        augmented = [e["augment"] for e in manifest.values() if "augment" in e]
        if split == "train":
            assert augmented and all(("noise" in a or "reverb" in a) for a in augmented)
        else:
            assert not augmented, "only training clips are augmented"
    for split in manifests:
        strip = lambda m: {u: {k: v for k, v in e.items() if k != "wav"} for u, e in m.items()}
        assert strip(manifests[split]) == strip(again[split])
        assert audio_hashes(manifests[split]) == audio_hashes(again[split])

    # the noise really has the asked SNR (SpeechBrain's mixing) and reverb changes the clip
    clean = speech.speak("she sells sea shells by the sea shore")
    noisy = augment.add_noise(clean, 10, np.random.default_rng(0))
    kept = 1 - 1 / (10 ** (10 / 20) + 1)
    residual = noisy - kept * clean
    snr = 20 * np.log10(np.sqrt(((kept * clean) ** 2).mean()) / np.sqrt((residual ** 2).mean()))
    assert snr == pytest.approx(10, abs=0.1)
    wet = augment.reverberate(clean, augment.ROOMS[2])
    assert len(wet) == len(clean) and not np.allclose(wet, clean, atol=1e-3)
