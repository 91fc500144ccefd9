"""recipes/decode.py keeps a hypothesis file only for the checkpoint and the generation
settings it was decoded with; otherwise the file is moved aside (kept) and decoding
starts over."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def decode_module():
    spec = importlib.util.spec_from_file_location("mowe_recipe_decode",
                                                  os.path.join(REPO, "recipes", "decode.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_other_generation_settings_start_the_decode_over(tmp_path):
    decode = decode_module()
    hyps = tmp_path / "hyps.jsonl"
    greedy = {"max_new_tokens": 24}
    assert decode.check_checkpoint_stamp(str(hyps), tmp_path / "CKPT1", greedy) is False
    hyps.write_text('{"id": "a", "hyp": "greedy answer"}\n')
    # same checkpoint, same settings: the file is kept (an interrupted decode resumes)
    assert decode.check_checkpoint_stamp(str(hyps), tmp_path / "CKPT1", greedy) is False
    assert hyps.exists()
    # beam search now: the greedy answers are moved aside, not mixed in
    assert decode.check_checkpoint_stamp(str(hyps), tmp_path / "CKPT1",
                                         {"max_new_tokens": 24, "num_beams": 4}) is True
    assert not hyps.exists()
    assert (tmp_path / "hyps.jsonl.stale").read_text() == '{"id": "a", "hyp": "greedy answer"}\n'


def test_another_checkpoint_starts_over_and_an_old_stamp_is_read(tmp_path):
    decode = decode_module()
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text("{}\n")
    # a stamp from before settings were recorded: the checkpoint alone decides
    (tmp_path / "hyps.jsonl.ckpt").write_text(str(tmp_path / "CKPT1") + "\n")
    assert decode.check_checkpoint_stamp(str(hyps), tmp_path / "CKPT1", {"x": 1}) is False
    assert hyps.exists()
    assert decode.check_checkpoint_stamp(str(hyps), tmp_path / "CKPT2", {"x": 1}) is True
    assert (tmp_path / "hyps.jsonl.stale").exists()
