"""recipes/validate_data.py and the manifest reader on entries that used to crash later
or be dropped silently (issue 17, cases 2, 3, 4 and 8)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mowe.data import ManifestError, read_manifest
from recipe_runs import setup  # noqa: F401  (fixture: tiny pretrained models)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "recipes", "validate_data.py")


def good_entry(path, **extra):
    row = {"wav": str(path), "duration": 1.0, "task": "asr", "instruction": "Transcribe.",
           "answer": "hello"}
    row.update(extra)
    return row


def validate_in_process(capsys, *args):
    """validate_data.main in this process (fast); returns (exit code, output)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("validate_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "one_second.wav"
    soundfile.write(path, 0.1 * np.ones(16000, dtype="float32"), 16000)
    return path


def validate(*args):
    result = subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    return result.returncode, result.stdout + result.stderr


BAD_FIELDS = [
    ({"duration": "abc"}, 'duration: not a number ("abc")'),
    ({"duration": -1}, "duration: must be a positive number"),
    ({"duration": True}, "duration: not a number (true)"),
    ({"answer": 42}, "answer: not a string (42)"),
    ({"answer": ["a", "b"]}, "answer: not a string"),
    ({"instruction": None}, "instruction: not a string (null)"),
    ({"instruction": "  "}, "instruction: empty"),
    ({"task": "dance"}, 'task: unknown task "dance" (known: asr, er, aqa, sqa, ac)'),
    ({"wav": 7}, "wav: not a string (7)"),
    ({"start": "x"}, "start: must be a non-negative number"),
    ({"start": 0.5, "stop": 0.2}, "stop: 0.2 is not after start 0.5"),
]


@pytest.mark.parametrize("change,message", BAD_FIELDS)
def test_ill_typed_fields_are_skipped_with_id_and_field(tmp_path, clip, capsys, change,
                                                        message):
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"good": good_entry(clip),
                                    "bad": good_entry(clip, **change)}))
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean")
    assert code == 0, output
    assert "train.json: kept 1, skipped 1" in output
    report = json.loads((tmp_path / "clean" / "validation_report.json").read_text())
    assert message in report["train.json"]["reasons"]["bad"]
    assert list(json.loads((tmp_path / "clean" / "train.json").read_text())) == ["good"]
    with pytest.raises(ManifestError, match=f"bad: .*{message[:12]}"):
        read_manifest(str(manifest))  # train/decode refuse it with the same words


def test_truncated_wav_and_wrong_duration_are_caught(tmp_path, clip, capsys):
    full = tmp_path / "two_seconds.wav"
    soundfile.write(full, 0.1 * np.ones(32000, dtype="float32"), 16000, subtype="PCM_16")
    data = full.read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(data[:len(data) // 2])  # half its data, header intact
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({
        "full": good_entry(full, duration=2.0),
        "close_enough": good_entry(clip, duration=1.05),
        "truncated": good_entry(truncated, duration=2.0),
        "wrong_duration": good_entry(clip, duration=3.0),
        "segment_past_end": good_entry(full, duration=2.0, start=1.5, stop=3.5),
    }))
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean")
    assert code == 0, output
    assert "kept 2, skipped 3 (duration mismatch: 3)" in output
    reasons = json.loads((tmp_path / "clean" / "validation_report.json")
                         .read_text())["train.json"]["reasons"]
    assert "the audio holds 0.999 s, the manifest's duration says 2.000 s" in \
        reasons["truncated"]
    assert "stop - start says 2.000 s" in reasons["segment_past_end"]


def test_duplicate_ids_are_counted_not_dropped_silently(tmp_path, clip):
    manifest = tmp_path / "train.json"
    entry = json.dumps(good_entry(clip))
    manifest.write_text("{" + f'"a": {entry}, "b": {entry}, "a": {entry}, "a": {entry}' + "}")
    code, output = validate("--manifests", manifest, "--out_dir", tmp_path / "clean")
    assert code == 0, output
    assert "kept 2, skipped 2 (duplicate id: 2)" in output
    reasons = json.loads((tmp_path / "clean" / "validation_report.json")
                         .read_text())["train.json"]["reasons"]
    assert sorted(reasons) == ["a (occurrence 2)", "a (occurrence 3)"]
    with pytest.raises(ManifestError, match="duplicate id"):
        read_manifest(str(manifest))


def test_manifests_with_the_same_name_are_refused_before_writing(tmp_path, clip):
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.json").write_text(json.dumps({folder: good_entry(clip)}))
    out = tmp_path / "clean"
    code, output = validate("--manifests", tmp_path / "A" / "train.json",
                            tmp_path / "B" / "train.json", "--out_dir", out)
    assert code != 0
    assert "would both be written to --out_dir as train.json" in output
    assert "Traceback" not in output and not out.exists()


def test_nonfinite_audio_is_skipped_by_validation(tmp_path, capsys):
    samples = 0.1 * np.ones(16000, dtype="float32")
    samples[5] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "ok.wav", 0.1 * np.ones(16000, dtype="float32"), 16000)
    manifest = tmp_path / "test.json"
    manifest.write_text(json.dumps({"nan": good_entry(tmp_path / "nan.wav"),
                                    "ok": good_entry(tmp_path / "ok.wav")}))
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean")
    assert code == 0 and "kept 1, skipped 1 (NaN or infinite: 1)" in output


def test_a_recipe_with_its_own_tasks_names_them(tmp_path, clip, capsys):
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"a": good_entry(clip, task="pitch"),
                                    "b": good_entry(clip, task="dance")}))
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean", "--tasks", "pitch", "count")
    assert code == 0 and "kept 1, skipped 1 (unknown task: 1)" in output
    assert list(read_manifest(str(manifest.parent / "clean" / "train.json"),
                              tasks=("pitch",))) == ["a"]


def recipe_yaml(folder, tasks_line):
    """A recipe conf/train.yaml extending a shared one, as egs/TEMPLATE's does; the shared
    file holds a tag whose construction would fail, to show that nothing is constructed."""
    (folder / "shared.yaml").write_text("tasks: [asr, er, aqa, sqa, ac]\n"
                                        "model: !new:no_such_module.Model\n"
                                        "lr: 0.001\n")
    (folder / "train.yaml").write_text(f"extends: shared.yaml\n{tasks_line}\n")
    return folder / "train.yaml"


def test_tasks_from_a_recipe_yaml_keep_what_training_keeps(tmp_path, clip, capsys):
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"a": good_entry(clip, task="pitch"),
                                    "b": good_entry(clip, task="asr"),
                                    "c": good_entry(clip, task="er", answer="happy")}))
    config = recipe_yaml(tmp_path, "tasks: [pitch, asr]")
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean", "--tasks_from", config)
    assert code == 0, output
    assert "task names from" in output and "pitch asr" in output
    assert "kept 2, skipped 1 (unknown task: 1)" in output
    kept = json.loads((tmp_path / "clean" / "train.json").read_text())
    assert sorted(kept) == ["a", "b"]
    # a recipe without its own tasks: the shared file's (here the five built-in ones)
    config = recipe_yaml(tmp_path, "lr: 0.01")
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean2", "--tasks_from", config)
    assert code == 0 and "kept 2, skipped 1 (unknown task: 1)" in output
    assert sorted(json.loads((tmp_path / "clean2" / "train.json").read_text())) == ["b", "c"]


@pytest.mark.parametrize("tasks_line,message", [
    ("tasks: asr", "'tasks' must be a non-empty list of task names"),
    ("tasks: []", "'tasks' must be a non-empty list of task names"),
    ("tasks: [asr, 3]", "'tasks' must be a non-empty list of task names"),
    ("tasks: [asr", "is not valid YAML"),
])
def test_tasks_from_refuses_a_bad_tasks_key_in_one_line(tmp_path, clip, capsys, tasks_line,
                                                        message):
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"a": good_entry(clip)}))
    config = recipe_yaml(tmp_path, tasks_line)
    code, output = validate_in_process(capsys, "--manifests", manifest, "--out_dir",
                                       tmp_path / "clean", "--tasks_from", config)
    assert code == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "clean" / "train.json").exists()


def test_tasks_from_a_missing_file_and_with_tasks_is_refused(tmp_path, clip):
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps({"a": good_entry(clip)}))
    code, output = validate("--manifests", manifest, "--out_dir", tmp_path / "clean",
                            "--tasks_from", tmp_path / "nope.yaml")
    assert code == 2 and "no such file" in output and "Traceback" not in output
    code, output = validate("--manifests", manifest, "--out_dir", tmp_path / "clean",
                            "--tasks_from", tmp_path / "nope.yaml", "--tasks", "asr")
    assert code == 2 and "not allowed with argument" in output


def test_train_refuses_a_bad_manifest_in_one_line(tmp_path, clip, setup):  # noqa: F811
    pretrained = setup[1]
    (tmp_path / "train.json").write_text(json.dumps({"a": good_entry(clip, answer=42)}))
    (tmp_path / "valid.json").write_text(json.dumps({"b": good_entry(clip)}))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "train.py"),
         os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
         f"--output_folder={tmp_path}/exp", f"--data_folder={tmp_path}",
         f"--pretrained_dir={pretrained}"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a: answer: not a string (42)" in result.stderr.strip().splitlines()[-1]
