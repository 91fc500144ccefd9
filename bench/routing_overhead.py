#!/usr/bin/env python3
"""Training-step cost of MoWE routing, at the offline model size.

Model: Whisper tiny.en-sized base encoder (d 384, 4 layers), SmolLM2-135M-sized Llama
(576 wide, 30 layers, LoRA r=8 on q/v), small weak encoders (d 128, 2 layers), Linear
adapter to 25 tokens; batch 8 of 5 s clips; float32 on CPU (or ``--device cuda``).
Weights are random (the timing does not depend on them); the models go through
``save_pretrained``/``from_pretrained`` like real checkpoints.

Routing is made the worst case for sparse dispatch: the data-independent router picks
encoder 0 and the data-dependent one spreads the batch over the other encoders (what
the diversity loss drives it to), so every sample runs two weak encoders and M=16 runs
them on the smallest sub-batches. ``--routing learned`` keeps the random routers'
own choices instead.

Configurations are timed round-robin (one step of each per round) so that machine
noise hits all of them alike; the median step time per configuration is used.

Prints one line per configuration, then the ratios, and as the last line the ratios as
``name=value`` pairs:
  mowe_m4_sparse_over_base     (target <= 1.10; issue 15)
  sparse_m16_over_sparse_m4    (target <= 1.05)
  dense_over_sparse_m4, dense_over_sparse_m16
  unpadded_over_padded_encode  (Whisper encoding of 5 s clips)
"""

import argparse
import functools
import logging
import os
import statistics
import tempfile
import time

import torch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per config")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default=None, help="where to save the random models")
    parser.add_argument("--routing", choices=["spread", "learned"], default="spread",
                        help="force worst-case spread routing, or keep the routers' choices")
    parser.add_argument("--small_llm", action="store_true",
                        help="a 4-layer LLM instead of the 30-layer one (quick check)")
    return parser.parse_args()


def build_models(workdir, small_llm):
    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    whisper = make_tiny_whisper(os.path.join(workdir, "whisper"), d_model=384, layers=4,
                                heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                                vocab_size=51864)
    llama = make_tiny_llama(os.path.join(workdir, "llama"), hidden_size=576,
                            num_layers=4 if small_llm else 30, num_heads=9,
                            num_key_value_heads=3, intermediate_size=1536)
    return whisper, llama


def spread_routing(mixture):
    """Make ``mixture`` route worst-case: indep -> encoder 0, dep -> spread over 1..M-1."""
    from mowe.models.routers import RoutingDecision

    indep, dep = mixture.routers
    with torch.no_grad():
        indep.w_indep.copy_(torch.tensor([1.0] + [-1.0] * (mixture.num_encoders - 1)))
    original = dep.forward

    def forward(z_base, base_lens):
        decision = original(z_base, base_lens)
        count = mixture.num_encoders - 1
        selected = 1 + torch.arange(z_base.shape[0], device=z_base.device) % count
        kept = decision.probs.gather(1, selected[:, None])
        weights = torch.zeros_like(decision.probs).scatter(1, selected[:, None], kept)
        return RoutingDecision(decision.probs, weights, selected, decision.loss,
                               decision.loss_parts)

    dep.forward = forward


def main():
    args = parse_args()
    logging.disable(logging.WARNING)
    from mowe.models.adapters import LinearDownsampleAdapter
    from mowe.models.encoders import SmallEncoder, WhisperEncoder
    from mowe.models.llm import LanguageModel
    from mowe.models.mixture import MixtureOfWeakEncoders
    from mowe.models.audio_llm import AudioLLM

    torch.manual_seed(0)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mowe_bench_")
    whisper_dir, llama_dir = build_models(workdir, args.small_llm)
    base = WhisperEncoder(whisper_dir, os.path.join(workdir, "cache"))
    padded_base = WhisperEncoder(whisper_dir, os.path.join(workdir, "cache"), pad_to_30s=True)
    llm = LanguageModel(llama_dir, lora_rank=8, lora_targets=["q_proj", "v_proj"])
    adapter = functools.partial(LinearDownsampleAdapter, output_dim=512, num_tokens=25,
                                frames_per_token=10)

    def mixture(num_encoders, dispatch):
        pool = [functools.partial(SmallEncoder, d_model=128, num_layers=2, num_heads=4)
                for _ in range(num_encoders)]
        return functools.partial(MixtureOfWeakEncoders, encoders=pool,
                                 routers=["indep", "dep"], dispatch=dispatch)

    configs = {
        "base": None,
        "sparse_m4": mixture(4, "sparse"),
        "sparse_m16": mixture(16, "sparse"),
        "dense_m4": mixture(4, "dense"),
        "dense_m16": mixture(16, "dense"),
    }
    device = torch.device(args.device)
    models = {}
    for name, mix in configs.items():
        model = AudioLLM(base, llm, adapter, mix).to(device).train()
        if model.mixture is not None and args.routing == "spread":
            spread_routing(model.mixture)
        trainable = [p for p in model.parameters() if p.requires_grad]
        models[name] = (model, torch.optim.AdamW(trainable, lr=1e-5))

    samples = int(args.seconds * 16000)
    generator = torch.Generator().manual_seed(0)
    wav = (torch.randn(args.batch_size, samples, generator=generator) * 0.1).to(device)
    wav_lens = torch.ones(args.batch_size, device=device)
    instructions = ["Transcribe the speech in this clip, please."] * args.batch_size
    answers = ["the quick brown fox jumps over the lazy dog near the river bank"] * \
        args.batch_size

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(name):
        model, optimizer = models[name]
        sync()
        start = time.perf_counter()
        out = model(wav, wav_lens, instructions, answers)
        loss = out.next_token_loss + 0.1 * out.mowe_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        return time.perf_counter() - start, out

    def encode(encoder):
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            encoder(wav, wav_lens)
        sync()
        return time.perf_counter() - start

    for name in models:  # warm-up
        step(name)
    encode(base.eval())
    encode(padded_base.eval())
    times = {name: [] for name in models}
    encoders_run = {name: [] for name in models}
    encode_times = {"unpadded": [], "padded": []}
    for _ in range(args.rounds):
        for name in models:
            seconds, out = step(name)
            times[name].append(seconds)
            if out.selected is not None:
                encoders_run[name].append(sum(out.encoder_calls.values()) / args.batch_size)
        encode_times["unpadded"].append(encode(base))
        encode_times["padded"].append(encode(padded_base))
    base.train()

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"device={args.device} batch={args.batch_size} clip={args.seconds}s "
          f"rounds={args.rounds} llm_layers={4 if args.small_llm else 30} "
          f"routing={args.routing}")
    for name, value in median.items():
        run = (f", weak encoders run per sample {statistics.mean(encoders_run[name]):.2f}"
               if encoders_run[name] else "")
        print(f"{name:12s} step {value:.3f} s (min {min(times[name]):.3f}){run}")
    enc = {k: statistics.median(v) for k, v in encode_times.items()}
    print(f"whisper encode 5 s clips: unpadded {enc['unpadded']:.3f} s, "
          f"30 s-padded {enc['padded']:.3f} s")
    ratios = {
        "mowe_m4_sparse_over_base": median["sparse_m4"] / median["base"],
        "sparse_m16_over_sparse_m4": median["sparse_m16"] / median["sparse_m4"],
        "dense_over_sparse_m4": median["dense_m4"] / median["sparse_m4"],
        "dense_over_sparse_m16": median["dense_m16"] / median["sparse_m16"],
        "unpadded_over_padded_encode": enc["unpadded"] / enc["padded"],
    }
    targets = {"mowe_m4_sparse_over_base": 1.10, "sparse_m16_over_sparse_m4": 1.05}
    for name, value in ratios.items():
        target = f" (target <= {targets[name]})" if name in targets else ""
        print(f"{name}: {value:.3f}{target}")
    print(" ".join(f"{name}={value:.3f}" for name, value in ratios.items()))


if __name__ == "__main__":
    main()
