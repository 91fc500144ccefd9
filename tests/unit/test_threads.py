"""mowe.train.threads.ThreadShare: a job takes up the thread share the stage driver writes
(recipes/stages.sh; the driver's side is tested in test_stage_markers.py)."""

import logging

import torch

from mowe.train.threads import ThreadShare


def test_a_job_takes_up_a_new_share_and_ignores_a_bad_one(tmp_path, monkeypatch, caplog):
    before = torch.get_num_threads()
    path = tmp_path / "share"
    monkeypatch.setenv("MOWE_THREAD_SHARE_FILE", str(path))
    share = ThreadShare()  # the path from the environment, as training and decoding do
    try:
        share.update()  # not written yet
        assert torch.get_num_threads() == before
        path.write_text("1\n")
        share.update()
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        share.update()  # unchanged file: not applied again
        assert torch.get_num_threads() == before
        with caplog.at_level(logging.WARNING, logger="mowe.train.threads"):
            path.write_text("two\n")
            share.update()
        assert torch.get_num_threads() == before
        assert "holds 'two', not a number: ignored" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_without_a_share_file_nothing_changes(monkeypatch):
    monkeypatch.delenv("MOWE_THREAD_SHARE_FILE", raising=False)
    before = torch.get_num_threads()
    ThreadShare().update()
    assert torch.get_num_threads() == before
