"""``bench/run_all.py --quick`` (what ``make bench`` runs at full size) runs on tiny
random models and prints every figure as ``name=value`` on its last line. No timing is
asserted: the quick figures mean nothing."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ["train_step_over_gemm_peak", "padded_tokens_share_before",
        "padded_tokens_share_after", "bucketed_over_shuffled_step",
        "mowe_m4_sparse_over_base", "sparse_m16_over_sparse_m4",
        "batched_over_sequential_decode", "decode_prefill_share", "decode_identical",
        "decode_tokens_per_s"]


def test_quick_bench_prints_every_ratio_on_its_last_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run_all.py"),
                             "--quick", "--workdir", str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    pairs = dict(pair.split("=", 1) for pair in last.split())
    for key in KEYS:
        assert key in pairs, (key, last)
        float(pairs[key])
    assert f"{KEYS[0]}_iqr" in pairs  # ratios carry their spread
    import torch

    if not torch.cuda.is_available():  # GPU figures only where CUDA is present
        assert not any(key.startswith("gpu_") for key in pairs), last


def test_bench_help():
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run_all.py"),
                             "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "batched_over_sequential_decode" in result.stdout
