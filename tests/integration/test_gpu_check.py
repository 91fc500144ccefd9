"""bench/gpu_check.sh, the device check: it refuses to run without CUDA (unless --tiny),
runs every part at toy size on the CPU with --tiny, and keeps the figures of the parts
that finished when one runs out of time."""

import json
import os
import subprocess

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "gpu_check.sh")


def check(*args, timeout=900):
    env = dict(os.environ, MOWE_PYTHON=os.environ.get("MOWE_PYTHON", "") or
               __import__("sys").executable)
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_stops_at_once_and_says_why(tmp_path):
    result = check(str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--tiny" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_tiny_path_runs_every_part_and_writes_the_folder(tmp_path):
    out = tmp_path / "out"
    result = check(str(out), "--tiny", "--tag", "pytest_gpu_check",
                   "--workdir", str(tmp_path / "work"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((out / "figures.json").read_text())
    assert {name: info["status"] for name, info in record["parts"].items()} == {
        "env": "ok", "paper": "ok",
        "paper_cudagraphs": "skipped (no compilation on the tiny path)",
        "recipe": "ok", "decode": "ok"}
    figures = record["figures"]
    for name in ("paper_step_s", "paper_ops_per_step", "paper_host_syncs_per_step",
                 "recipe_features_s", "recipe_train_s", "recipe_decode_s", "recipe_score_s",
                 "batched_over_sequential_decode"):
        assert figures[name] > 0, name
    assert figures["decode_identical"] == 1.0  # batched answers equal one-by-one ones
    assert figures["decode_clips"] == 15  # 3 test clips of each of the 5 tasks
    summary = (out / "summary.txt").read_text().strip()
    assert result.stdout.strip().splitlines()[-1] == summary
    assert summary.startswith("gpu_check: paper_step_s=") and "decode_identical=1" in summary
    assert record["finished"] and record["device"] == "cpu (tiny)"
    # the recipe's outputs come back, the heavy parts stay in the work folder
    for system in ("baseline", "mowe"):
        assert (out / "recipe" / system / "hyps.jsonl").is_file()
        assert (out / "recipe" / system / "scores.json").is_file()
    assert "torch" in (out / "env.txt").read_text()
    sizes = [os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(out) for name in names]
    assert sum(sizes) < 20 * 2 ** 20 and not list(out.rglob("*.wav"))


def test_a_part_out_of_time_leaves_the_others_figures(tmp_path):
    out = tmp_path / "out"
    result = check(str(out), "--tiny", "--skip", "recipe,decode", "--paper_timeout", "1")
    assert result.returncode == 1
    record = json.loads((out / "figures.json").read_text())
    assert record["parts"]["paper"]["status"] == "timed out after 1 s"
    assert record["parts"]["env"]["status"] == "ok"
    assert record["parts"]["recipe"]["status"] == "skipped"
    assert "parts=env:ok,paper:timed out" in result.stdout.strip().splitlines()[-1]


def test_config_dir_carries_no_weights_and_random_models_load(tmp_path):
    """The GPU path's models: the configs and tokenizers carried to the machine, then
    random weights of the same architectures that load through from_pretrained."""
    import importlib.util

    import transformers

    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(REPO, "bench", "gpu_check.py"))
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    source = tmp_path / "pretrained"
    make_tiny_pretrained_dir(str(source))
    configs = tmp_path / "configs"
    assert gpu_check.make_config_dir(str(source), str(configs)) > 0
    assert not [p for p in configs.rglob("*") if p.suffix in (".safetensors", ".bin")]
    models = tmp_path / "random"
    gpu_check.random_models(str(configs), str(models))
    for name in os.listdir(source):
        if (source / name / "config.json").is_file():
            config = transformers.AutoConfig.from_pretrained(models / name)
            model = getattr(transformers, config.architectures[0]).from_pretrained(models / name)
            assert sum(p.numel() for p in model.parameters()) > 0
            assert sorted(os.listdir(configs / name)) == sorted(
                f for f in os.listdir(models / name) if not f.endswith(".safetensors"))
