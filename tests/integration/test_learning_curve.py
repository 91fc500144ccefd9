"""Learning curves: a training that keeps every epoch, scored epoch by epoch."""

import json
import os
import re
import subprocess
import sys

import yaml

from conftest import REPO

RECIPES = os.path.join(REPO, "recipes")


def python(*command, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *command], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=900)


def test_every_epoch_is_decoded_from_its_own_checkpoint_and_scored(tiny_package, tmp_path):
    data, exp = tiny_package["data"], tmp_path / "exp" / "mowe"
    args = [os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
            f"--output_folder={exp}", f"--data_folder={data}",
            f"--pretrained_dir={tiny_package['pretrained']}", "--batch_size=2",
            "--max_new_tokens=4", "--seed=7"]
    trained = python(os.path.join(RECIPES, "train.py"), *args, "--number_of_epochs=2",
                     "--global_batch_size=2", "--keep_epoch_checkpoints=True", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]

    result = python(os.path.join(RECIPES, "learning_curve.py"),
                    f"--train_manifest={data}/train.json", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = json.loads((exp / "curve" / "curve.json").read_text())
    assert [row["epoch"] for row in rows] == [1, 2]
    log = (exp / "train_log.txt").read_text().splitlines()
    for row, line in zip(rows, log):
        assert line.startswith(f"epoch: {row['epoch']},")
        assert float(re.search(r"valid loss: (\S+?),", line).group(1)) == row["valid_loss"]
        assert set(row["scores"]) == {"asr", "er", "aqa"}
        assert row["scores"]["asr"][0] == "wer"
        # each epoch's answers come from that epoch's checkpoint
        stamp = (exp / "curve" / f"epoch{row['epoch']}" / "hyps.jsonl.ckpt").read_text()
        checkpoint = stamp.splitlines()[0]
        meta = yaml.safe_load(open(os.path.join(checkpoint, "CKPT.yaml"), encoding="utf-8"))
        assert meta["epoch"] == row["epoch"]
        hyps = (exp / "curve" / f"epoch{row['epoch']}" / "hyps.jsonl").read_text()
        assert len(hyps.splitlines()) == 6
    assert "| epoch | lr | train loss | valid loss | aqa accuracy | asr wer | er accuracy |" \
        in result.stdout

    # an epoch that was not kept, and a malformed one: one error line each
    missing = python(os.path.join(RECIPES, "learning_curve.py"), "--epochs=3",
                     f"--train_manifest={data}/train.json", *args, cwd=tmp_path)
    assert missing.returncode != 0
    assert "epochs [1, 2], not [3]" in missing.stderr and "Traceback" not in missing.stderr
    bad = python(os.path.join(RECIPES, "decode.py"), *args, "--checkpoint_epoch=last",
                 cwd=tmp_path)
    assert bad.returncode != 0 and "--checkpoint_epoch must be an epoch number" in bad.stderr
    absent = python(os.path.join(RECIPES, "decode.py"), *args, "--checkpoint_epoch=9",
                    f"--hyp_file={tmp_path}/h.jsonl", cwd=tmp_path)
    assert absent.returncode != 0
    assert "no checkpoint of epoch 9" in absent.stderr and "epochs kept: [1, 2]" in absent.stderr
