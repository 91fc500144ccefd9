"""Output files that cannot be written (a directory of that name, an immutable file)
end an entry point with one line naming the path, and leave no ``.partial`` behind:
the shared atomic writer, decode's shard merge, data preparation, the synthetic corpus
and the results report."""

import json
import os
import subprocess
import sys

import pytest

from mowe.utils.atomic import OutputPathError, write_text_atomic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


def chattr(flag, path):
    """``chattr +i/-i``; False where it is not available (not root, unsupported fs)."""
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True,
                              timeout=10).returncode == 0
    except OSError:
        return False


@pytest.fixture()
def immutable(tmp_path):
    """A function making a file immutable; the flag is removed after the test."""
    made = []

    def make(path, text="old"):
        path.write_text(text)
        if not chattr("+i", path):
            pytest.skip("chattr +i is not available here (needs root and a supporting fs)")
        made.append(path)
        return path

    yield make
    for path in made:
        chattr("-i", path)


def partials(folder):
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def assert_one_line_error(result, path):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot write {path}" in errors[0], result.stderr[-2000:]


def test_atomic_writer_names_the_path_and_cleans_up(tmp_path, immutable):
    assert write_text_atomic(tmp_path / "ok.txt", "x") == str(tmp_path / "ok.txt")
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(OutputPathError, match=f"cannot write {tmp_path / 'dir.txt'}: it is "
                                              "a directory"):
        write_text_atomic(tmp_path / "dir.txt", "x")
    with pytest.raises(OutputPathError, match="cannot write .*missing/a.txt: No such file"):
        write_text_atomic(tmp_path / "missing" / "a.txt", "x")
    locked = immutable(tmp_path / "locked.txt")
    with pytest.raises(OutputPathError, match=f"cannot write {locked}: operation not "
                                              "permitted"):
        write_text_atomic(locked, "new")
    assert locked.read_text() == "old" and not partials(tmp_path)


def write_shard_setup(tmp_path):
    manifest = {f"u{i}": {"wav": "x.wav", "duration": 1.0, "task": "asr",
                          "instruction": "Transcribe.", "answer": "a"} for i in range(2)}
    (tmp_path / "test.json").write_text(json.dumps(manifest))
    (tmp_path / "hyps.jsonl.shard1of1").write_text(
        "".join(json.dumps({"id": utt, "hyp": "a"}) + "\n" for utt in manifest))


def merge(tmp_path, hyp_file):
    return subprocess.run([PYTHON, os.path.join(REPO, "recipes", "decode.py"),
                           "--merge_shards", "1", "--hyp_file", str(hyp_file),
                           "--test_manifest", str(tmp_path / "test.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_decode_merge_into_a_directory_or_immutable_file(tmp_path, immutable):
    write_shard_setup(tmp_path)
    hyp_file = tmp_path / "hyps.jsonl"
    hyp_file.mkdir()
    assert_one_line_error(merge(tmp_path, hyp_file), hyp_file)
    hyp_file.rmdir()
    immutable(hyp_file)
    assert_one_line_error(merge(tmp_path, hyp_file), hyp_file)
    assert not partials(tmp_path)


def test_prepare_report_into_a_directory(tmp_path):
    from mowe.data import prepare as prep

    (tmp_path / "out" / "train.json").mkdir(parents=True)

    def main(argv):
        prep.write_json_atomic({"a": 1}, str(tmp_path / "out" / "train.json"))

    with pytest.raises(SystemExit) as exit_:
        prep.run_main(main, [])
    assert str(exit_.value) == f"error: cannot write {tmp_path / 'out' / 'train.json'}: it " \
                               "is a directory"
    assert not partials(tmp_path)


def test_synthetic_corpus_merge_into_an_immutable_manifest(tmp_path, immutable):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.shard1of1.json").write_text(json.dumps({f"{split}1": {}}))
    locked = immutable(tmp_path / "train.json")
    result = subprocess.run([PYTHON, "-m", "mowe.synth", "--out", str(tmp_path),
                             "--merge_shards", "1"], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert_one_line_error(result, locked)
    assert not partials(tmp_path)


def test_results_report_into_a_directory(tmp_path):
    (tmp_path / "h.jsonl").write_text(json.dumps({"id": "u", "task": "asr", "hyp": "a b",
                                                  "ref": "a b"}) + "\n")
    scored = subprocess.run([PYTHON, "-m", "mowe.scoring", "score", "--hyp_file",
                             str(tmp_path / "h.jsonl"), "--out_dir", str(tmp_path / "sys")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert scored.returncode == 0, scored.stderr
    (tmp_path / "sys" / "hyps.jsonl").write_text((tmp_path / "h.jsonl").read_text())
    (tmp_path / "RESULTS.md").mkdir()
    result = subprocess.run([PYTHON, os.path.join(REPO, "recipes", "report.py"), "--exp",
                             str(tmp_path), "--systems", "sys"], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert_one_line_error(result, tmp_path / "RESULTS.md")
    assert not partials(tmp_path)


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    from mowe.utils.atomic import staging_folder

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    out = tmp_path / "model"
    killed = tmp_path / f".model.partial-{dead_pid}-abc"
    killed.mkdir()
    (killed / "config.json").write_text("{}")
    running = tmp_path / ".model.partial-1-xyz"  # pid 1 runs: another run in progress
    running.mkdir()
    other = tmp_path / ".other.partial-999999999-x"  # not this output's
    other.mkdir()

    new = staging_folder(str(out))

    assert not killed.exists()
    assert running.exists() and other.exists()
    assert os.path.basename(new).startswith(f".model.partial-{os.getpid()}-")
