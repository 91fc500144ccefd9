"""``bench/run_all.py --quick`` (what ``make bench`` runs at full size) runs on tiny
random models and prints every figure as ``name=value`` on its last line. No timing is
asserted: the quick figures mean nothing."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = ["train_step_over_gemm_peak", "padded_tokens_share_before",
        "padded_tokens_share_after", "bucketed_over_shuffled_step", "recipe_step_over_plain_step",
        "packed_over_padded_step", "llm_positions_packed_over_padded",
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

    if torch.get_num_threads() >= 2:  # systems at once share out the threads
        assert 0 < float(pairs["concurrent_over_sequential_systems"]) < 10, last
    else:
        assert "concurrent_over_sequential_systems: not measured" in result.stdout
    assert 0 < float(pairs["llm_positions_packed_over_padded"]) < 1  # exact, not timed
    # training figures as the recipes train (train_llm_dtype auto), decoding in float32
    from mowe.train.precision import native_bf16_reason

    if native_bf16_reason(on_gpu=False):
        assert "frozen LLM in training: bfloat16; decoding: float32" in result.stdout
        for key in ("bf16_llm_over_fp32_llm_step", "recipe_step_over_gemm_peak",
                    "gemm_bf16_gflops_per_s"):
            assert float(pairs[key]) > 0, (key, last)
    else:
        assert "frozen LLM in training: float32; decoding: float32" in result.stdout
        assert "bf16_llm_over_fp32_llm_step" not in pairs
    if not torch.cuda.is_available():  # GPU figures only where CUDA is present
        assert not any(key.startswith("gpu_") for key in pairs), last


def test_bench_help():
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run_all.py"),
                             "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "batched_over_sequential_decode" in result.stdout
    # where CUDA is present, make bench times the paper-size step compiled as well
    assert "--no-paper_compile" in result.stdout and "--paper_compile_mode" in result.stdout
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    assert run_all.parse_args([]).paper_compile
    assert not run_all.parse_args(["--no-paper_compile"]).paper_compile
    # a bad mode is refused before any part runs (not on the GPU part at the end)
    bad = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run_all.py"),
                          "--paper_compile_mode", "fastest"], capture_output=True, text=True,
                         cwd=REPO)
    assert bad.returncode == 2 and "invalid choice: 'fastest'" in bad.stderr


def test_paper_size_step_builds_the_paper_spec_on_the_scale_it_is_given(tmp_path):
    """bench/paper_size_step.py builds recipes/conf/paper/train.yaml's model with the
    architectures of its folders (random weights, not the folders' tiny weights), and
    its command line prints the step figures (tiny scale on the CPU: a smoke test)."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import paper_size_step
    finally:
        sys.path.pop(0)
    import torch

    folders = paper_size_step.model_folders("tiny", str(tmp_path / "models"))
    model, opt_class, _ = paper_size_step.paper_model(folders, str(tmp_path),
                                                      torch.device("cpu"))
    tiny = paper_size_step.SCALES["tiny"]
    llm_config = model.llm.model.get_base_model().config
    assert llm_config.hidden_size == tiny["llm"]["hidden_size"]
    assert llm_config.num_hidden_layers == tiny["llm"]["num_hidden_layers"]
    assert model.base_encoder.output_dim == tiny["base"]["d_model"]
    assert model.base_encoder.encoder.config.num_mel_bins == 128  # Whisper-large-v3's
    assert [e.output_dim for e in model.mixture.encoders] == [tiny["weak"]["d_model"]] * 4
    assert model.adapter.num_tokens == 100  # the paper spec's
    # the step is timed with the spec's optimizer: fused AdamW at the paper's lr
    optimizer = opt_class([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 5e-5 and optimizer.defaults["fused"]
    # the paper-scale table is the real architectures'
    paper = paper_size_step.SCALES["paper"]
    assert paper["llm"]["hidden_size"] == 4096 and paper["base"]["d_model"] == 1280

    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "paper_size_step.py"),
                             "--scale", "tiny", "--device", "cpu", "--batch", "2",
                             "--repeats", "1", "--workdir", str(tmp_path / "cli"),
                             "--compile", "--compile_mode", "reduce-overhead"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = dict(p.split("=", 1) for p in result.stdout.strip().splitlines()[-1].split())
    for key in ("paper_step_s", "paper_step_tflops", "paper_step_over_gemm_peak",
                "paper_params_billion", "paper_llm_positions_per_clip", "paper_ops_per_step",
                "paper_host_syncs_per_step", "paper_step_s_eager",
                "paper_step_s_compiled_llm", "paper_step_s_compiled"):
        assert float(pairs[key]) > 0, (key, pairs)
    assert "paper_mfu" not in pairs  # no data-sheet peak for a CPU
    assert float(pairs["paper_step_s"]) == min(float(pairs[key]) for key in (
        "paper_step_s_eager", "paper_step_s_compiled_llm", "paper_step_s_compiled"))
    assert "compile (reduce-overhead)" in result.stdout.splitlines()[0]


def test_the_operation_counter_counts_kernels_and_host_waits_but_not_views():
    """paper_ops_per_step / paper_host_syncs_per_step: views are free, int() of a tensor
    and nonzero make the host wait for the device."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import paper_size_step
    finally:
        sys.path.pop(0)
    import torch

    with paper_size_step.OperationCounter() as counter:
        a = torch.ones(4)             # 1 (a factory)
        b = (a + 1).view(2, 2).t()    # add: 1; view, t: views
        int(b.sum())                  # sum: 1; int(): 1, a wait
        torch.nonzero(a)              # 1, a wait
    assert (counter.operations, counter.syncs) == (5, 2)


def test_serve_load_script_measures_and_checks_answers(tiny_package, tmp_path):
    """bench/serve_load.py on the tiny package: every level answered, answers under load
    equal to those sent alone, the JSON written."""
    import json

    manifest = tmp_path / "clips.json"
    rows = tiny_package["hyps"][:2]
    manifest.write_text(json.dumps({row["id"]: {"wav": row["wav"],
                                                 "instruction": row["instruction"]}
                                    for row in rows}))
    out = tmp_path / "load.json"
    result = subprocess.run([sys.executable, os.path.join(REPO, "bench", "serve_load.py"),
                             "--model", str(tiny_package["package"]), "--manifest",
                             str(manifest), "--concurrency", "1", "3", "--requests", "6",
                             "--check_answers", "--out", str(out)],
                            capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())["reports"][0]
    assert report["health_ok"] == 100
    for level in report["levels"]:
        assert level["ok"] == 6 and not level["errors"]
        assert level["answers_equal_alone"] == 6
    assert "c=  3" in result.stdout
