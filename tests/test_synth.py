"""The synthetic 5-task corpus: determinism, disjoint splits, content."""

import hashlib
import json
import os

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
