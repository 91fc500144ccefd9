"""The real-corpus preparation scripts on tiny fixture corpora in the official layouts.

Every script runs as a subprocess, as a user would run it; the fixtures hold good items
and bad ones (missing files, corrupt audio, empty texts, bad CSV rows), and the tests
check the manifests and that every bad item is in ``prepare_report.json`` with a reason.
"""

import csv
import json
import os
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mowe.data import prepare as prep
from mowe.data import prepare_audio as prep_audio
from mowe.data import audiobench
from mowe.data.instructions import INSTRUCTIONS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPORA = ("librispeech", "meld", "clotho_aqa", "spoken_squad", "audiocaps")
SCRIPTS = {name: os.path.join(REPO, "egs", name, "local", "prepare.py")
           for name in CORPORA + ("multitask",)}


# ----------------------------------------------------------------------------- helpers

def tone(path, seconds, rate=16000, frequency=440.0):
    """Write a sine tone (format from the extension) and return its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype("float32"), rate)
    return str(path)


def corrupt(path):
    """Write bytes no decoder accepts under an audio name."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"this is not audio at all " * 8)
    return str(path)


def write_csv(path, header, rows, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def start(name, *args):
    return subprocess.Popen([sys.executable, SCRIPTS[name], *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def run(name, *args):
    """Run a script; fail with its stderr unless it succeeds."""
    code, stdout, stderr = finish(start(name, *args))
    assert code == 0, f"{name} failed ({code}):\n{stderr}"
    return stderr


def load(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as handle:
        return json.load(handle)


def skipped(report, split=None):
    """``{id: reason}`` of the report's skipped items (one split or all)."""
    splits = [split] if split else list(report["splits"])
    return {item["id"]: item["reason"] for name in splits
            for item in report["splits"][name]["items"]}


def check_schema(entries, task):
    for entry in entries.values():
        assert entry["task"] == task
        assert os.path.isabs(entry["wav"]) and os.path.isfile(entry["wav"])
        assert entry["instruction"] and entry["answer"]
        assert entry["duration"] > 0


# ----------------------------------------------------------------------------- all scripts

def run_in_process(name, *args):
    """Run a script's ``__main__`` here (cheaper than a process) until it exits."""
    argv = sys.argv
    sys.argv = [SCRIPTS[name], *map(str, args)]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(SCRIPTS[name], run_name="__main__")
    finally:
        sys.argv = argv
    return stop.value.code


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_script_has_help(name, capsys):
    assert run_in_process(name, "--help") == 0
    text = capsys.readouterr().out
    assert text.startswith("usage:") and "--save_folder" in text
    assert text.count("--") > 4 and len(text.splitlines()) > 15  # description and options


def test_wrong_paths_exit_with_one_line_errors(tmp_path):
    """Each script stops with ``error: ...`` (a string exit code: no traceback, status 1)."""
    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    calls = [(name, "--data_folder", missing, "--save_folder", tmp_path / name)
             for name in CORPORA]
    calls += [("librispeech", "--data_folder", empty, "--save_folder", tmp_path / "ls"),
              ("clotho_aqa", "--data_folder", empty, "--audio_folder", empty,
               "--save_folder", tmp_path / "c"),
              ("multitask", "--manifests", missing, "--save_folder", tmp_path / "mt")]
    for name, *args in calls:
        message = run_in_process(name, *args)
        assert isinstance(message, str) and message.startswith("error: "), (name, message)
        assert "\n" not in message, (name, message)
    assert sorted(os.listdir(tmp_path)) == ["empty"]  # nothing written


def test_malformed_files_exit_with_one_line_errors(tmp_path):
    """A SQuAD JSON whose article is not an object, an unreadable CSV, an AudioCaps
    pattern with a bad field: ``error: ...`` naming the problem, no traceback."""
    squad = tmp_path / "squad"
    squad.mkdir()
    (squad / "spoken_train-v1.1.json").write_text(json.dumps({"data": ["not an article"]}))
    clotho = tmp_path / "clotho"
    (clotho / "audio_files").mkdir(parents=True)
    for split in ("train", "val", "test"):  # an over-long field breaks Python's CSV reader
        (clotho / f"clotho_aqa_{split}.csv").write_text(
            "file_name,QuestionText,answer,confidence\n\"a.wav," + "x" * 200000 + "\n")
    calls = [("spoken_squad", "--data_folder", squad, "--save_folder", tmp_path / "s1",
              "not a SQuAD article"),
             ("clotho_aqa", "--data_folder", clotho, "--save_folder", tmp_path / "c1",
              "malformed CSV"),
             ("audiocaps", "--data_folder", tmp_path, "--save_folder", tmp_path / "a1",
              "--audio_pattern", "{split.x}.wav", "bad field")]
    for name, *args, expected in calls:
        code, _, stderr = finish(start(name, *args))
        assert code != 0 and "Traceback" not in stderr, (name, stderr[-2000:])
        assert expected in stderr, (name, stderr[-2000:])


# ----------------------------------------------------------------------------- LibriSpeech

def make_librispeech(root):
    """Three subsets; train has a missing flac, an empty line and a corrupt flac."""
    def chapter(subset, speaker, chap, utterances):
        folder = root / "LibriSpeech" / subset / str(speaker) / str(chap)
        lines = []
        for number, (text, seconds) in enumerate(utterances):
            utt = f"{speaker}-{chap}-{number:04d}"
            lines.append(f"{utt} {text}".rstrip())
            if seconds == "corrupt":
                corrupt(folder / f"{utt}.flac")
            elif seconds is not None:
                tone(folder / f"{utt}.flac", seconds)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{speaker}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")

    chapter("train-clean-100", 19, 198, [("HELLO WORLD", 1.0), ("GOOD MORNING", 0.5),
                                         ("NO AUDIO HERE", None), ("", 0.4),
                                         ("BROKEN FILE", "corrupt")])
    chapter("train-clean-100", 26, 495, [("IT WAS A DARK NIGHT", 0.7)])
    chapter("dev-clean", 84, 121, [("THE DEV LINE", 0.6)])
    chapter("test-clean", 61, 70, [("SHORT TEST", 0.8), ("FAR TOO LONG", 2.0)])


def test_librispeech(tmp_path):
    make_librispeech(tmp_path / "corpus")
    out = tmp_path / "out"
    log = run("librispeech", "--data_folder", tmp_path / "corpus", "--save_folder", out,
              "--train_splits", "train-clean-100", "--max_duration", "1.5", "--jobs", "2")
    train, valid, test = (load(out, f"{s}.json") for s in prep.SPLITS)
    assert sorted(train) == ["19-198-0000", "19-198-0001", "26-495-0000"]
    check_schema(train, "asr")
    hello = train["19-198-0000"]
    assert hello["answer"] == "hello world" and hello["words"] == "HELLO WORLD"
    assert hello["instruction"] in INSTRUCTIONS["asr"]
    assert hello["wav"].endswith("19-198-0000.flac")
    assert hello["duration"] == pytest.approx(1.0, abs=1e-3)
    assert train["19-198-0001"]["duration"] == pytest.approx(0.5, abs=1e-3)
    assert list(valid) == ["84-121-0000"] and list(test) == ["61-70-0000"]
    report = load(out, prep.REPORT_NAME)
    reasons = skipped(report, "train")
    assert reasons["19-198-0002"].startswith("missing flac")
    assert reasons["19-198-0003"] == "empty transcript"
    assert reasons["19-198-0004"].startswith("cannot read audio")
    assert skipped(report, "test")["61-70-0001"].startswith("too long")
    assert report["splits"]["train"]["kept"] == 3 and report["splits"]["train"]["skipped"] == 3
    assert "train: kept 3, skipped 3" in log
    # --data_folder may also be LibriSpeech/ itself; a missing subset is a clear error
    code, _, stderr = finish(start("librispeech", "--data_folder",
                                   tmp_path / "corpus" / "LibriSpeech", "--save_folder",
                                   tmp_path / "out2", "--train_splits", "train-clean-360"))
    assert code == 1 and stderr.startswith("error: LibriSpeech subset train-clean-360")


# ----------------------------------------------------------------------------- MELD

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
               "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]


def make_mp4(path, seconds):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
               "-f", "lavfi", "-i", f"color=c=black:s=16x16:d={seconds}", "-shortest",
               "-c:v", "libx264", "-c:a", "aac", str(path)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        command[command.index("libx264")] = "mpeg4"
        subprocess.run(command, check=True, capture_output=True)
    return str(path)


def meld_row(number, text, emotion, dialogue, utterance):
    return [number, text, "Joey", emotion, "neutral", dialogue, utterance, 1, 1,
            "00:00:01,000", "00:00:02,000"]


def make_meld(root):
    """Train: 2 good clips, a corrupt one, a missing one, two bad rows; cp1252 text."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    long_clip = make_mp4(root / "clips" / "long.mp4", 1.0)
    short_clip = make_mp4(root / "clips" / "short.mp4", 0.6)
    data = root / "MELD.Raw"
    for folder, name, clip in [("train/train_splits", "dia0_utt0", long_clip),
                               ("train/train_splits", "dia0_utt1", short_clip),
                               ("dev/dev_splits_complete", "dia0_utt0", short_clip),
                               ("test/output_repeated_splits_test", "dia0_utt0", long_clip)]:
        os.makedirs(data / folder, exist_ok=True)
        shutil.copy(clip, data / folder / f"{name}.mp4")
    corrupt(data / "train" / "train_splits" / "dia1_utt0.mp4")
    write_csv(data / "train_sent_emo.csv", MELD_HEADER, [
        meld_row(1, "Oh my God, that\u2019s great!", "joy", 0, 0),
        meld_row(2, "Okay.", "neutral", 0, 1),
        meld_row(3, "Get out!", "anger", 1, 0),          # corrupt mp4
        meld_row(4, "What was that?", "fear", 1, 1),     # no mp4
        meld_row(5, "Hmm.", "boredom", 2, 0),            # not a MELD label
        meld_row(6, "Hey.", "joy", "x", 1),              # non-integer id
    ], encoding="cp1252")
    write_csv(data / "dev_sent_emo.csv", MELD_HEADER, [meld_row(1, "Ew.", "disgust", 0, 0)])
    write_csv(data / "test_sent_emo.csv", MELD_HEADER, [meld_row(1, "No way!", "surprise",
                                                                 0, 0)])
    return data


def test_meld(tmp_path):
    from mowe.scoring.answers import extract_emotion

    data = make_meld(tmp_path)
    out = tmp_path / "out"
    log = run("meld", "--data_folder", data, "--save_folder", out, "--jobs", "2")
    train, valid, test = (load(out, f"{s}.json") for s in prep.SPLITS)
    assert sorted(train) == ["dia0_utt0", "dia0_utt1"]
    check_schema(train, "er")
    joy = train["dia0_utt0"]
    assert joy["label"] == "joy" and joy["answer"] == "The speaker sounds joyful."
    assert joy["words"] == "Oh my God, that\u2019s great!"
    assert "neutral, joy, disgust, sadness, surprise, anger, fear" in joy["instruction"]
    assert joy["wav"] == str(out / "wav" / "train" / "dia0_utt0.wav")
    info = soundfile.info(joy["wav"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert joy["duration"] == pytest.approx(1.0, abs=0.1)
    assert train["dia0_utt1"]["duration"] == pytest.approx(0.6, abs=0.1)
    # same file name in every split: each split takes the clip of its own folder
    assert valid["dia0_utt0"]["duration"] == pytest.approx(0.6, abs=0.1)
    assert test["dia0_utt0"]["duration"] == pytest.approx(1.0, abs=0.1)
    assert valid["dia0_utt0"]["label"] == "disgust"
    for entry in list(train.values()) + list(valid.values()) + list(test.values()):
        assert extract_emotion(entry["answer"]) == entry["label"]
    reasons = skipped(load(out, prep.REPORT_NAME), "train")
    assert reasons["dia1_utt0"].startswith("ffmpeg failed")
    assert reasons["dia1_utt1"] == "missing mp4: dia1_utt1.mp4"
    bad_rows = sorted(reason for key, reason in reasons.items() if key.startswith("train_"))
    assert len(bad_rows) == 2 and all(r.startswith("bad csv row") for r in bad_rows)
    assert "train: kept 2, skipped 4" in log
    # a rerun reuses the extracted wavs and writes the same manifests
    stamp = os.stat(joy["wav"]).st_mtime_ns
    run("meld", "--data_folder", data, "--save_folder", out, "--jobs", "2")
    assert os.stat(joy["wav"]).st_mtime_ns == stamp
    assert load(out, "train.json") == train


def test_meld_as_a_job_array_of_shards(tmp_path):
    """--shard J/N: each job extracts its share of the clips and writes no manifest; the
    unsharded run then extracts nothing more and writes what a single run writes."""
    data = make_meld(tmp_path)
    out, single = tmp_path / "out", tmp_path / "single"
    run("meld", "--data_folder", data, "--save_folder", single, "--jobs", "1")
    extracted = []
    for index in (1, 2):
        run("meld", "--data_folder", data, "--save_folder", out, "--jobs", "1",
            "--shard", f"{index}/2")
        assert not (out / "train.json").exists() and not (out / prep.REPORT_NAME).exists()
        now = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
        assert len(now) > len(extracted)  # this job converted clips of its own
        extracted = now
    assert extracted == sorted(str(p.relative_to(single)) for p in single.rglob("*.wav"))
    stamps = {p: os.stat(out / p).st_mtime_ns for p in extracted}
    run("meld", "--data_folder", data, "--save_folder", out, "--jobs", "1")
    assert {p: os.stat(out / p).st_mtime_ns for p in extracted} == stamps  # none redone
    for split in prep.SPLITS:
        mine, reference = load(out, f"{split}.json"), load(single, f"{split}.json")
        assert {k: {**v, "wav": None} for k, v in mine.items()} == \
            {k: {**v, "wav": None} for k, v in reference.items()}
    code, _, stderr = finish(start("meld", "--data_folder", data, "--save_folder", out,
                                   "--shard", "3/2"))
    assert code == 2 and "shard 3 of 2 does not exist" in stderr


def test_answers_name_their_label():
    """Every MELD answer sentence maps back to its label with the scorer's extractor."""
    import importlib.util

    from mowe.scoring.answers import extract_emotion

    spec = importlib.util.spec_from_file_location("meld_prepare", SCRIPTS["meld"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(module.ANSWERS) == sorted(module.LABELS)
    for label, sentence in module.ANSWERS.items():
        assert extract_emotion(sentence) == label


# ----------------------------------------------------------------------------- Clotho-AQA

CLOTHO_HEADER = ["file_name", "QuestionText", "answer", "confidence"]


def make_clotho(root):
    """Train: two good clips (6 questions x 3 answers in all), bad rows of every kind."""
    audio = root / "audio_files"
    tone(audio / "birds calling.wav", 1.0, rate=44100)
    tone(audio / "rain.wav", 0.5, rate=44100)
    corrupt(audio / "broken.wav")
    rows = [["birds calling.wav", "Is there a caf\u00e9 nearby?", a, "yes"]
            for a in ("yes", "no", "no")]
    rows += [["birds calling.wav", "What animal is heard?", a, "maybe"]
             for a in ("Birds ", "dog", "birds")]
    rows += [["rain.wav", "What is falling?", a, "yes"] for a in ("rain", "water", "snow")]
    rows += [["broken.wav", "Is it loud?", "yes", "yes"],
             ["gone.wav", "Is it quiet?", "no", "yes"],
             ["rain.wav", "Is it windy?", "  ", "yes"],
             ["rain.wav", "", "yes", "yes"]]
    write_csv(root / "clotho_aqa_train.csv", CLOTHO_HEADER, rows, encoding="latin-1")
    write_csv(root / "clotho_aqa_val.csv", CLOTHO_HEADER,
              [["rain.wav", "Is it raining?", "yes", "yes"]], encoding="latin-1")
    write_csv(root / "clotho_aqa_test.csv", CLOTHO_HEADER,
              [["birds calling.wav", "Are there birds?", "YES", "yes"]], encoding="latin-1")
    return root


def test_clotho_aqa(tmp_path):
    data = make_clotho(tmp_path / "clotho")
    out, out_majority = tmp_path / "out", tmp_path / "out_majority"
    per_row = start("clotho_aqa", "--data_folder", data, "--save_folder", out)
    majority = start("clotho_aqa", "--data_folder", data, "--save_folder", out_majority,
                     "--majority_answer")
    for process in (per_row, majority):
        code, _, stderr = finish(process)
        assert code == 0, stderr

    train = load(out, "train.json")
    check_schema(train, "aqa")
    assert len(train) == 9
    first = train["birds calling__00"]
    assert first["instruction"] == "Is there a caf\u00e9 nearby?"
    assert first["answer"] == "yes" and first["confidence"] == "yes"
    assert first["duration"] == pytest.approx(1.0, abs=1e-3)
    assert train["birds calling__03"]["answer"] == "birds"
    assert train["rain__00"]["duration"] == pytest.approx(0.5, abs=1e-3)
    assert len(load(out, "valid.json")) == 1
    assert list(load(out, "test.json").values())[0]["answer"] == "yes"
    reasons = list(skipped(load(out, prep.REPORT_NAME), "train").values())
    assert sum(r.startswith("cannot read audio") for r in reasons) == 1
    assert "missing wav: gone.wav" in reasons
    assert "empty answer" in reasons and "empty question" in reasons

    majority_train = load(out_majority, "train.json")
    assert sorted(majority_train) == ["birds calling__q0", "birds calling__q1", "rain__q0"]
    assert majority_train["birds calling__q0"]["answer"] == "no"
    assert majority_train["birds calling__q0"]["answers"] == ["yes", "no", "no"]
    assert majority_train["birds calling__q1"]["answer"] == "birds"
    assert majority_train["rain__q0"]["answer"] == "rain"  # a tie: the first answer wins


# ----------------------------------------------------------------------------- Spoken-SQuAD

def squad_json(path, topics):
    """SQuAD v1.1 JSON; ``topics`` is a list of paragraphs, each a list of (q, answers)."""
    data = []
    for t, paragraphs in enumerate(topics):
        data.append({"title": f"topic{t}", "paragraphs": [
            {"context": "words " * 5, "qas": [
                {"id": f"q{t}{p}{k}", "question": question,
                 "answers": [{"text": text, "answer_start": 0} for text in answers]}
                for k, (question, answers) in enumerate(questions)]}
            for p, questions in enumerate(paragraphs)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data, "version": "1.1"}))


def make_spoken_squad(root):
    """Four train paragraphs (one with a missing sentence wav), one test paragraph."""
    squad_json(root / "spoken_train-v1.1.json", [
        [[("Who came?", ["Anna", "anna"]), ("Nobody answered?", [])],
         [("Where?", ["Paris"])]],
        [[("When?", ["1990"])], [("Why?", ["rain"]), ("How?", ["by car"])]],
    ])
    squad_json(root / "spoken_test-v1.1.json", [[[("What colour?", ["red"])]]])
    train, test = root / "wav" / "train", root / "wav" / "dev"
    tone(train / "0_0_0.wav", 0.3, rate=22050)
    tone(train / "0_0_1.wav", 0.2, rate=22050)
    tone(train / "0_1_0.wav", 0.3)
    tone(train / "0_1_2.wav", 0.3)  # sentence 1 is missing
    tone(train / "1_0_0.wav", 0.4)
    tone(train / "1_1_0.wav", 0.2)
    tone(train / "1_1_1.wav", 0.2)
    tone(test / "0_0_0.wav", 0.6)   # same name as a train wav, other duration
    return root


def test_spoken_squad(tmp_path):
    data = make_spoken_squad(tmp_path / "squad")
    out = tmp_path / "out"
    run("spoken_squad", "--data_folder", data, "--save_folder", out,
        "--valid_fraction", "0.25", "--jobs", "2")
    train, valid, test = (load(out, f"{s}.json") for s in prep.SPLITS)
    kept = {**train, **valid}
    assert sorted(kept) == ["q000", "q100", "q110", "q111"]
    assert len(valid) >= 1 and len(train) >= 1
    paragraphs_valid = {entry["paragraph"] for entry in valid.values()}
    assert not paragraphs_valid & {entry["paragraph"] for entry in train.values()}
    check_schema(kept, "sqa")
    first = kept["q000"]
    assert first["instruction"] == "Who came?"
    assert first["answer"] == "Anna" and first["answers"] == ["Anna", "anna"]
    assert first["duration"] == pytest.approx(0.5, abs=2e-3)  # 0.3 s + 0.2 s at 22.05 kHz
    assert os.path.basename(first["wav"]) == "0_0.wav"
    info = soundfile.info(first["wav"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert kept["q110"]["wav"] == kept["q111"]["wav"]
    assert kept["q110"]["duration"] == pytest.approx(0.4, abs=2e-3)
    assert list(test) == ["q000"] and test["q000"]["duration"] == pytest.approx(0.6, abs=2e-3)
    reasons = skipped(load(out, prep.REPORT_NAME))
    assert reasons["q001"] == "no answer"
    assert reasons["q010"] == "missing sentence wavs: 0_1: sentences 1"


# ----------------------------------------------------------------------------- AudioCaps

AUDIOCAPS_HEADER = ["audiocap_id", "youtube_id", "start_time", "caption"]


def make_audiocaps(root):
    """Train: clip A (2 captions), B (flac), M missing; val: C + missing N; test: D, bad E."""
    audio = root / "audio"
    tone(audio / "train" / "yA_30.wav", 1.0)
    tone(audio / "train" / "yB_0.flac", 0.5)
    tone(audio / "val" / "yC_10.wav", 0.8)
    tone(audio / "test" / "yD_5.wav", 0.9)
    corrupt(audio / "test" / "yE_0.wav")
    write_csv(root / "train.csv", AUDIOCAPS_HEADER, [
        [1, "yA", 30, "A dog barks"], [2, "yA", 30, "A dog is barking loudly"],
        [3, "yB", 0, "Rain falls on a roof"], [4, "yM", 20, "A car passes by"],
        [5, "yB", 0, ""]])
    write_csv(root / "val.csv", AUDIOCAPS_HEADER, [
        [10, "yC", 10, "Birds chirp"], [11, "yC", 10, "Birds are singing"],
        [12, "yN", 40, "Wind blows"]])
    write_csv(root / "test.csv", AUDIOCAPS_HEADER, [
        [20, "yD", 5, "A man speaks"], [21, "yD", 5, "Someone talks"],
        [22, "yD", 5, "A person is speaking"], [23, "yE", 0, "Water runs"]])
    return root


def test_audiocaps(tmp_path):
    data = make_audiocaps(tmp_path / "audiocaps")
    out = tmp_path / "out"
    log = run("audiocaps", "--data_folder", data, "--audio_folder", data / "audio",
              "--save_folder", out, "--audio_pattern", "{split}/{youtube_id}_{start_time}.*")
    train, valid, test = (load(out, f"{s}.json") for s in prep.SPLITS)
    assert sorted(train) == ["1", "2", "3"]
    check_schema(train, "ac")
    assert train["1"]["answer"] == "A dog barks" and train["1"]["instruction"] in INSTRUCTIONS["ac"]
    assert train["1"]["duration"] == pytest.approx(1.0, abs=1e-3)
    assert train["3"]["wav"].endswith("yB_0.flac")
    assert train["3"]["duration"] == pytest.approx(0.5, abs=1e-3)
    assert list(valid) == ["yC_10"]
    assert valid["yC_10"]["captions"] == ["Birds chirp", "Birds are singing"]
    assert valid["yC_10"]["answer"] == "Birds chirp"
    assert list(test) == ["yD_5"] and len(test["yD_5"]["captions"]) == 3
    report = load(out, prep.REPORT_NAME)
    assert report["missing_clips"] == {"train": ["yM_20"], "valid": ["yN_40"], "test": []}
    assert skipped(report, "train")["4"] == "missing clip: yM_20"
    assert skipped(report, "train")["5"] == "empty caption"
    assert skipped(report, "test")["yE_0"].startswith("cannot read audio")
    assert "train: 1 of 3 clips missing" in log


# ----------------------------------------------------------------------------- combiner

def fake_manifest(folder, split, task, count, duration=1.0):
    entries = {f"u{i}": {"wav": f"/data/{task}/{split}{i}.wav", "duration": duration,
                         "task": task, "instruction": "Do it.", "answer": "ok"}
               for i in range(count)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.json").write_text(json.dumps(entries))


def test_multitask_combiner(tmp_path):
    sizes = {"librispeech": ("asr", 4), "meld": ("er", 2), "clotho_aqa": ("aqa", 1)}
    for name, (task, count) in sizes.items():
        for split in prep.SPLITS:
            if name == "clotho_aqa" and split == "test":
                continue  # a dataset without a test manifest is allowed
            fake_manifest(tmp_path / name, split, task, count)
    out = tmp_path / "out"
    run("multitask", "--manifests", *(tmp_path / name for name in sizes),
        "--save_folder", out, "--weights", "2", "1", "1", "--asr_only_stage1")
    train, valid, test = (load(out, f"{s}.json") for s in prep.SPLITS)
    assert len(train) == 7 and len(valid) == 7 and len(test) == 6
    assert "librispeech_u0" in train and "meld_u1" in train and "clotho_aqa_u0" in train
    assert train["meld_u1"]["dataset"] == "meld" and train["meld_u1"]["task"] == "er"
    weights = load(out, "sampling_weights.json")
    assert sorted(weights) == sorted(train)
    assert sum(weights.values()) == pytest.approx(1.0)
    per_dataset = {name: sum(w for key, w in weights.items() if key.startswith(name + "_u"))
                   for name in sizes}
    assert per_dataset == pytest.approx({"librispeech": 0.5, "meld": 0.25, "clotho_aqa": 0.25})
    assert weights["librispeech_u0"] == pytest.approx(0.5 / 4)
    stage1 = load(out, "train_stage1.json")
    assert sorted(stage1) == [f"librispeech_u{i}" for i in range(4)]
    assert {entry["task"] for entry in stage1.values()} == {"asr"}
    code, _, stderr = finish(start("multitask", "--manifests", tmp_path / "meld",
                                   "--save_folder", out, "--weights", "1", "2"))
    assert code == 2 and "--weights needs 1 values" in stderr and "Traceback" not in stderr


# ----------------------------------------------------------------------------- shared helpers

def test_skip_report_and_duration_filter(tmp_path):
    report = prep.SkipReport()
    report.skip("train", "a", "cannot read audio: a.wav: bad header")
    report.skip("train", "b", "cannot read audio: b.wav: truncated")
    report.skip("train", "c", "missing flac: c.flac")
    assert report.summary("train", kept=5) == \
        "train: kept 5, skipped 3 (cannot read audio: 2, missing flac: 1)"
    report.finish_split("train", 5)
    path = report.write(str(tmp_path))
    assert json.load(open(path))["splits"]["train"]["reasons"] == \
        {"cannot read audio": 2, "missing flac": 1}
    durations = prep_audio.DurationFilter(1.0, 5.0)
    assert durations.reason(3.0) is None
    assert durations.reason(0.5).startswith("too short")
    assert durations.reason(6.0).startswith("too long")
    with pytest.raises(prep.PrepareError):
        prep_audio.DurationFilter(5.0, 1.0)


def test_manifest_is_written_atomically(tmp_path):
    path = str(tmp_path / "sub" / "train.json")
    prep.write_manifest({"u": {"wav": "a.wav"}}, path)
    assert json.load(open(path)) == {"u": {"wav": "a.wav"}}
    assert os.listdir(tmp_path / "sub") == ["train.json"]


def test_convert_to_wav_is_resumable(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    source = tone(tmp_path / "in.flac", 0.5, rate=44100)
    bad = corrupt(tmp_path / "bad.flac")
    target, failed = str(tmp_path / "o" / "in.wav"), str(tmp_path / "o" / "bad.wav")
    result = prep_audio.convert_to_wav([(source, target), (bad, failed)], jobs=2, desc=None)
    assert result[target] is None and result[failed].startswith("ffmpeg failed: bad.flac")
    assert not os.path.exists(failed) and not os.path.exists(failed + ".partial")
    info = soundfile.info(target)
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(0.5, abs=0.01)
    stamp = os.stat(target).st_mtime_ns
    assert prep_audio.convert_to_wav([(source, target)], desc=None) == {target: None}
    assert os.stat(target).st_mtime_ns == stamp


def test_audiobench_rows_become_wavs_and_entries(tmp_path):
    rate = 8000
    rows = [
        {"context": {"array": np.zeros(rate, dtype="float32"), "sampling_rate": rate},
         "instruction": "What is said?", "answer": "HELLO THERE"},
        {"context": {"audio": {"array": np.zeros(16000 // 2), "sampling_rate": 16000}},
         "instruction": {"text": "Is it loud?"}, "answer": {"text": "no"}},
        {"context": {"array": np.zeros(100), "sampling_rate": 16000},
         "instruction": "x", "answer": ""},
    ]
    report = prep.SkipReport()
    entries = audiobench.audiobench_entries(rows, str(tmp_path), "aqa", report,
                                      prep_audio.DurationFilter(), answer=str.lower,
                                      extra=lambda answer: {"raw": answer})
    assert sorted(entries) == ["ab_000000", "ab_000001"]
    first = entries["ab_000000"]
    assert (first["instruction"], first["answer"], first["raw"]) == \
        ("What is said?", "hello there", "HELLO THERE")
    assert first["duration"] == pytest.approx(1.0)
    assert soundfile.info(first["wav"]).samplerate == 16000
    assert entries["ab_000001"]["instruction"] == "Is it loud?"
    assert entries["ab_000001"]["duration"] == pytest.approx(0.5)
    assert skipped(report.as_dict()) == {"ab_000002": "empty answer"}


def test_audiobench_without_datasets_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(prep.PrepareError, match="pip install datasets"):
        audiobench.load_audiobench_test(str(tmp_path))


def test_audiobench_test_split_from_load_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    make_librispeech(tmp_path / "corpus")
    # as AudioBench's test sets are stored: an Audio column (encoded wav bytes)
    wav = tmp_path / "one.wav"
    soundfile.write(str(wav), 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    rows = {"context": [{"bytes": wav.read_bytes(), "path": None}],
            "instruction": ["Transcribe."],
            "answer": ["HELLO AUDIOBENCH"]}
    # built as encoded storage, then typed as Audio (an arrow cast: encoding examples
    # through `datasets` would need torchcodec, which this stack does not install)
    table = datasets.Dataset.from_dict(rows).cast_column("context", datasets.Audio())
    assert isinstance(table.features["context"], datasets.Audio)
    table.save_to_disk(str(tmp_path / "ab"))
    wav.unlink()  # the dataset holds the audio itself
    out = tmp_path / "out"
    run("librispeech", "--data_folder", tmp_path / "corpus", "--save_folder", out,
        "--train_splits", "train-clean-100", "--audiobench_test", tmp_path / "ab")
    test = load(out, "test.json")
    assert [entry["answer"] for entry in test.values()] == ["hello audiobench"]
    assert next(iter(test.values()))["duration"] == pytest.approx(1.0)
