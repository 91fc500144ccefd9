#!/usr/bin/env python3
"""Training-step time and MFU of the paper-size model on one GPU (random weights).

The paper's configuration (``recipes/conf/paper/train.yaml``: Whisper-large-v3 base at
30 s, a pool of 4 Whisper-tiny weak encoders with indep + dep routers, a Linear+GELU
adapter to 100 audio tokens, Llama-3-8B with LoRA on q/v, LLM weights in bf16), built
from that very spec with model folders that hold the real architectures' configs and
random weights (timing does not depend on the weights). One optimizer step per timed
repetition, under bf16 autocast, SDPA attention (transformers' default; flash or
memory-efficient kernels where the GPU has them), the spec's optimizer (fused AdamW);
``--compile`` also times the step with every LLM decoder layer ``torch.compile``d, then
with the base encoder's layers compiled as well, and reports the fastest.
``--profile FILE`` writes the CUDA kernels that took the most time in two steps of the
fastest configuration (torch.profiler).

Figures (``name=value`` pairs on the last line):
  paper_step_s              median time of one optimizer step (batch ``--batch``)
  paper_step_tflops         FLOPs of a step (forward + backward, counted by
                            torch.utils.flop_counter) / 1e12
  paper_mfu                 achieved FLOP/s over the device's dense bf16 peak from its
                            data sheet (target >= 0.45); absent if the device is not in
                            the table below
  paper_step_over_gemm_peak achieved FLOP/s over a bf16 8192^3 matrix product timed in
                            the same run (a measured peak: lower than the data sheet's)
  paper_peak_memory_gib     peak memory allocated by the step (CUDA only)
  paper_params_billion      parameters on the device (paper scale: ~8.7: Llama-3-8B 8.0,
                            Whisper-large-v3 encoder 0.64, 4 Whisper-tiny encoders 0.03)
  paper_llm_positions_per_clip   LLM positions of one clip (100 audio tokens + prompt
                            + answer)
  paper_ops_per_step        ATen operations a step dispatches, views left out (each
                            one is a kernel launch or a host-side op: in eager mode the
                            host's cost per op bounds the step from below)
  paper_host_syncs_per_step operations of a step that make the host wait for the device
                            (.item(), int() of a device tensor, nonzero)

``--scale tiny --device cpu`` shrinks every part (same code path, same spec) so that the
script can be checked without a GPU; its numbers mean nothing. ``--scale deep_tiny`` keeps
the paper's layer counts at tiny widths: its ``paper_ops_per_step`` and
``paper_host_syncs_per_step`` are the paper-size step's, counted on a CPU.
"""

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_common import gemm_flops_per_s, timed  # noqa: E402  (bench/ is not a package)

# Architectures (Hugging Face config fields) of the paper's models, and a tiny stand-in.
SCALES = {
    "paper": {
        # openai/whisper-large-v3
        "base": dict(d_model=1280, layers=32, heads=20, encoder_ffn_dim=5120,
                     decoder_ffn_dim=5120, num_mel_bins=128, vocab_size=51866),
        # openai/whisper-tiny
        "weak": dict(d_model=384, layers=4, heads=6, encoder_ffn_dim=1536,
                     decoder_ffn_dim=1536, num_mel_bins=80, vocab_size=51865),
        # meta-llama/Meta-Llama-3-8B-Instruct
        "llm": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                    rope_theta=500000.0, max_position_embeddings=8192),
    },
    "tiny": {
        "base": dict(d_model=64, layers=2, heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                     num_mel_bins=128),
        "weak": dict(d_model=32, layers=1, heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     num_mel_bins=80),
        "llm": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=128, vocab_size=512),
    },
}

# the paper's depths (layer counts) at tiny widths: a CPU counts the operations a
# paper-size step dispatches (paper_ops_per_step) without the paper's memory
SCALES["deep_tiny"] = {
    "base": dict(SCALES["tiny"]["base"], layers=SCALES["paper"]["base"]["layers"]),
    "weak": dict(SCALES["tiny"]["weak"], layers=SCALES["paper"]["weak"]["layers"]),
    "llm": dict(SCALES["tiny"]["llm"],
                num_hidden_layers=SCALES["paper"]["llm"]["num_hidden_layers"]),
}
COMPILE_MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]

# Dense bf16 tensor-core peak FLOP/s from the vendors' data sheets (no sparsity).
DATASHEET_BF16_PEAK = {
    "H200": 989.4e12, "H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12,
    "H100 PCIe": 756.5e12, "H100 NVL": 835.5e12, "A100": 312e12, "L40S": 362.05e12,
    "L4": 121e12, "A10": 125e12,
}

# A paper-like sample: an instruction and a reference answer of AudioBench-like length.
INSTRUCTION = "Please listen to the audio clip carefully and describe what you hear."
ANSWER = ("A man speaks calmly about the weather while birds chirp in the background "
          "and a car passes by.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="paper",
                        help="paper: the real sizes (needs a GPU with ~60 GiB); tiny: a "
                             "smoke test of the script; deep_tiny: the paper's layer counts "
                             "at tiny widths (operation counts on a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8,
                        help="clips per step (the paper spec's per-process batch_size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps")
    parser.add_argument("--compile", action="store_true",
                        help="also time the step with the LLM's decoder layers compiled, "
                             "then with the base encoder's layers compiled too")
    parser.add_argument("--compile_mode", default="default",
                        choices=COMPILE_MODES,
                        help="torch.compile's mode for --compile (reduce-overhead: CUDA "
                             "graphs, which take the host's launch time off the step)")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="write the top CUDA kernels of two profiled steps to FILE")
    parser.add_argument("--workdir", default=None,
                        help="where the config-only model folders go (default: a temp dir)")
    return parser.parse_args(argv)


def datasheet_peak(device):
    """The device's dense bf16 peak FLOP/s from ``DATASHEET_BF16_PEAK``, or None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in DATASHEET_BF16_PEAK.items():
        if key in name:
            return value
    return None


def model_folders(scale, workdir):
    """Folders holding each model's config, tokenizer or feature extractor, and tiny
    weights that ``random_weights`` never reads (SpeechBrain's lobe wants a weight file
    to recognise a Hugging Face folder)."""
    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    sizes = SCALES[scale]
    folders = {}
    for name in ("base", "weak"):
        folder = os.path.join(workdir, name)
        tiny = dict(sizes[name])
        big = dict(tiny)
        tiny.update(d_model=16, layers=1, heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
        make_tiny_whisper(folder, **tiny)
        _rewrite_config(folder, d_model=big["d_model"], encoder_layers=big["layers"],
                        decoder_layers=big["layers"], encoder_attention_heads=big["heads"],
                        decoder_attention_heads=big["heads"],
                        encoder_ffn_dim=big["encoder_ffn_dim"],
                        decoder_ffn_dim=big["decoder_ffn_dim"],
                        **({"vocab_size": big["vocab_size"]} if "vocab_size" in big else {}))
        folders[name] = folder
    folder = os.path.join(workdir, "llm")
    make_tiny_llama(folder, hidden_size=16, num_layers=1, num_heads=2)
    _rewrite_config(folder, tie_word_embeddings=False, **sizes["llm"])
    folders["llm"] = folder
    return folders


def _rewrite_config(folder, **fields):
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    config.update(fields)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1)


@contextlib.contextmanager
def random_weights(device):
    """Make every ``from_pretrained`` build its model from the folder's config with
    random weights, directly on ``device``.

    Written by hand because transformers has no loader for "this config, random
    weights": writing 8B random weights to disk only to read them back would cost 16 GB
    and minutes, and the timing does not depend on the weights.
    """
    from transformers import AutoConfig, PreTrainedModel

    original = PreTrainedModel.__dict__["from_pretrained"]

    def from_config(cls, source, *args, config=None, dtype=None, torch_dtype=None,
                    **kwargs):
        if not hasattr(config, "to_dict"):  # absent, or a config name rather than object
            config = AutoConfig.from_pretrained(source)
        with torch.device(device):
            return cls._from_config(config, dtype=dtype or torch_dtype or torch.float32)

    PreTrainedModel.from_pretrained = classmethod(from_config)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = original


def paper_model(folders, workdir, device):
    """The model of ``recipes/conf/paper/train.yaml`` on ``folders``' architectures."""
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"output_folder": os.path.join(workdir, "exp"),
                 "data_folder": os.path.join(workdir, "data"),
                 "pretrained_cache": os.path.join(workdir, "cache"),
                 "base_encoder_source": folders["base"],
                 "weak_encoder_source": folders["weak"], "llm_source": folders["llm"]}
    path = os.path.join(ROOT, "recipes", "conf", "paper", "train.yaml")
    with random_weights(device), open(path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    return hparams["model"].to(device).train(), hparams["opt_class"], hparams["mowe_loss_weight"]


def compile_layers(layers, mode="default"):
    """``torch.compile`` each layer in place (layers share code, so they share compiled
    graphs)."""
    for layer in layers:
        layer.compile(mode=mode)
    return len(layers)


def llm_layers(model):
    """The LLM's decoder layers."""
    return model.llm.model.get_base_model().model.layers


def base_encoder_layers(model):
    """The base (Whisper) encoder's layers; the weak encoders stay eager (their batch
    changes with the routing every step)."""
    return model.base_encoder.lobe.model.encoder.layers


def write_profile(step, path, device):
    """Profile two steps; write the kernels that took the most device time to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(prof.key_averages().table(sort_by=sort_by, row_limit=40,
                                               max_name_column_width=90))


class OperationCounter:
    """Counts the ATen operations run under it (views left out) and those that make the
    host wait for the device; a ``TorchDispatchMode`` (written by hand: torch has a
    FLOP counter but no operation counter)."""

    SYNCING = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal"}

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if not func.is_view:
                    counter.operations += 1
                    counter.syncs += func.overloadpacket.__name__ in counter.SYNCING
                return func(*args, **(kwargs or {}))

        self.operations, self.syncs, self.mode = 0, 0, _Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def measure(args):
    """Build the model, time ``args.repeats`` steps; return the figures (a dict)."""
    logging.disable(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mowe_paper_bench_")
    torch.manual_seed(0)
    folders = model_folders(args.scale, workdir)
    model, opt_class, routing_weight = paper_model(folders, workdir, device)
    # the recipe's optimizer (fused AdamW where the device has it)
    optimizer = opt_class([p for p in model.parameters() if p.requires_grad])
    generator = torch.Generator().manual_seed(0)
    wav = (torch.randn(args.batch, 10 * 16000, generator=generator) * 0.1).to(device)
    batch = (wav, torch.ones(args.batch, device=device), [INSTRUCTION] * args.batch,
             [ANSWER] * args.batch)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step():
        with autocast:
            out = model(*batch)
            loss = out.next_token_loss + routing_weight * out.mowe_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    peak = datasheet_peak(device)

    def timed_steps(label):
        started = time.perf_counter()
        step()  # warm-up (and compilation, when compiled)
        times = [timed(step, device)[0] for _ in range(args.repeats)]
        median = statistics.median(times)
        # progress: a figure is on the log even if a later part is cut off
        print(f"{label}: warm-up {time.perf_counter() - started - sum(times):.1f} s, "
              f"steps {' '.join(f'{t:.3f}' for t in times)} s, median {median:.3f} s, "
              f"{flops / median / 1e12:.0f} TFLOP/s"
              + (f", MFU {flops / median / peak:.3f}" if peak else ""), flush=True)
        return median

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, OperationCounter() as operations:
        step()
    flops = counter.get_total_flops()
    print(f"model built and one step counted: {flops / 1e12:.1f} TFLOP, "
          f"{operations.operations} operations ({operations.syncs} waiting for the device) "
          "a step", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    figures = {"paper_step_s": timed_steps("eager")}
    if args.compile:
        compile_layers(llm_layers(model), args.compile_mode)
        figures["paper_step_s_eager"] = figures["paper_step_s"]
        figures["paper_step_s_compiled_llm"] = timed_steps("LLM layers compiled")
        compile_layers(base_encoder_layers(model), args.compile_mode)
        figures["paper_step_s_compiled"] = timed_steps("LLM and base encoder layers compiled")
        figures["paper_step_s"] = min(figures["paper_step_s_eager"],
                                      figures["paper_step_s_compiled_llm"],
                                      figures["paper_step_s_compiled"])
    if args.profile:
        write_profile(step, args.profile, device)
    achieved = flops / figures["paper_step_s"]
    figures["paper_step_tflops"] = flops / 1e12
    size = 8192 if device.type == "cuda" else 1024
    figures["paper_step_over_gemm_peak"] = achieved / gemm_flops_per_s(size, device,
                                                                       torch.bfloat16)
    if peak:
        figures["paper_mfu"] = achieved / peak
    if device.type == "cuda":
        figures["paper_peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    # parameters the step runs with (SpeechBrain moves the unused Whisper decoders to CPU)
    figures["paper_params_billion"] = sum(p.numel() for p in model.parameters()
                                          if p.device.type == device.type) / 1e9
    prefix, suffix = model.prompt_ids(INSTRUCTION)
    figures["paper_ops_per_step"] = operations.operations
    figures["paper_host_syncs_per_step"] = operations.syncs
    figures["paper_llm_positions_per_clip"] = (len(prefix) + len(suffix)
                                               + len(model.answer_ids(ANSWER))
                                               + model.adapter.num_tokens)
    return figures


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    compiled = f", compile ({args.compile_mode})" if args.compile else ""
    print(f"paper-size step: scale {args.scale}, device {name}, batch {args.batch}, "
          f"{args.repeats} timed steps, bf16 autocast{compiled}", flush=True)
    figures = measure(args)
    for key, value in figures.items():
        print(f"{key:32s} {value:10.4f}")
    print(" ".join(f"{key}={value:.4f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
