"""RESULTS.md records provenance (issue 14): git commit and dirty flag, the exact run.sh
commands, machine, wall time per stage, library versions."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_results_md_ends_with_provenance(tmp_path):
    (tmp_path / "h.jsonl").write_text(json.dumps({"id": "u", "task": "asr", "hyp": "a b",
                                                  "ref": "a b"}) + "\n")
    scored = subprocess.run([sys.executable, "-m", "mowe.scoring", "score", "--hyp_file",
                             str(tmp_path / "h.jsonl"), "--out_dir", str(tmp_path / "sys")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert scored.returncode == 0, scored.stderr
    (tmp_path / "sys" / "hyps.jsonl").write_text((tmp_path / "h.jsonl").read_text())
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "commands.txt").write_text(
        "2026-11-23T10:00:00Z egs/x/run.sh --stage 3 --train_args '--lr=1e-4'\n")
    (tmp_path / "log" / "stage_times.tsv").write_text(
        "3\ttrain\t4000\t2026-11-23T11:00:00Z\n4\tdecode\t75\t2026-11-23T11:02:00Z\n")
    result = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "report.py"),
                             "--exp", str(tmp_path), "--systems", "sys"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "RESULTS.md").read_text()
    provenance = text[text.index("## Provenance"):]
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    if head:
        assert f"`{head}`" in provenance
        assert "(clean checkout)" in provenance or "(with uncommitted changes)" in provenance
    assert "run.sh --stage 3 --train_args '--lr=1e-4'" in provenance
    assert "CPU cores; GPU:" in provenance
    for package in ("torch", "transformers", "speechbrain", "peft"):
        assert f"{package} " in provenance
    assert "| 3 train | 1 h 06 min |" in provenance and "| 4 decode | 1 min 15 s |" in provenance
