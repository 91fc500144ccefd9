#!/usr/bin/env python3
"""Performance ratios of training and decoding, each timed in one run (``make bench``).

Machines are noisy, so every figure is a ratio of two timings taken side by side,
over interleaved rounds (each round times every configuration once, so a slow spell
hits all of them alike); each ratio is reported as the median over rounds with its
interquartile range. Judge a target by the median, with the spread shown.

Models: the bundled offline models (``pretrained/whisper-tiny.en``,
``pretrained/smollm2-135m-instruct``) when present, else random models of the same
sizes (timing does not depend on the weights). ``--quick``: tiny random models and two
rounds, a smoke test of the script only (its numbers mean nothing).

Ratios (CPU, always):
  train_step_over_gemm_peak    FLOP/s of a full float32 training step of the default
                               recipe's model (MoWE M=4 sparse, batch 4 of corpus-like
                               clips; FLOPs counted by torch.utils.flop_counter) over
                               the FLOP/s of a large fp32 matrix product (target >= 0.5)
  Where the CPU multiplies bf16 natively, the other training figures time the step as
  the recipes train it (train_llm_dtype auto: frozen LLM weights in bf16), and:
  bf16_llm_over_fp32_llm_step  that step over the float32 step, same batches    (< 1)
  recipe_step_over_gemm_peak   that step's FLOP/s over the fp32 peak, and
  gemm_bf16_gflops_per_s       a large bf16 product's GFLOP/s (the bf16 units' peak)
  Decoding always runs the spec's float32 weights, as recipes/decode.py does.
  padded_tokens_share_before   padded LLM positions with shuffled batches of 4, over an
  padded_tokens_share_after    epoch of the corpus-like set; after: bucketing (the
                               recipe's default BucketBatchSampler)
  padded_audio_share_before / _after   the same for audio samples (encoders' padding)
  bucketed_over_shuffled_step  step time of the bucketed over the shuffled batches of
                               the same clips
  llm_positions_packed_over_padded   LLM positions of an epoch of shuffled batches of 4
                               with the rows packed into one sequence and the prompt's
                               shared prefix in it once (AudioLLM pack_rows, the
                               default), over padded rows (exact count)
  packed_over_padded_step      step time with packed rows over padded rows, the same
                               shuffled batches (with the recipe's cached base features
                               the LLM is a larger share of a step than here)
  recipe_step_over_plain_step  the recipe's step (fused AdamW, quarter-draw LoRA
                               dropout) over the same model's step with torch's CPU
                               defaults (per-tensor AdamW, nn.Dropout), same batches
  mowe_m4_sparse_over_base     routing_overhead.py's setup: batch 8 of 5 s clips, spread
                               routing (every sample runs two weak encoders) (<= 1.10)
  sparse_m16_over_sparse_m4    same setup                                       (<= 1.05)
  batched_over_sequential_decode   greedy decoding of 32 test-like clips at batch 8 (in
                               recipes/decode.py's order: by task, longest first) over
                               one by one (KV cache, generate with inputs_embeds) (<= 0.25)
  decode_prefill_share         one by one, the time of encoding + prefill (generate with
                               max_new_tokens=1) over the whole decode: where prefill is
                               compute-bound (a CPU), batching does not make it cheaper,
                               so this share bounds batched_over_sequential_decode below
  decode_identical             share of clips whose batched answer equals the one-by-one
  decode_tokens_per_s          answer tokens per second, batched (the only absolute
                               figure; machine-dependent)
  concurrent_over_sequential_systems   two recipe models' training steps (MoWE M=4,
                               cached base features) at once, the threads shared out,
                               over one after the other with every thread: what a
                               recipe's --system_jobs auto does on CPUs (bench/
                               concurrent_systems.py; needs 2+ threads)       (< 1)
GPU (only when CUDA is present): gpu_train_step_over_gemm_peak,
  gpu_mowe_m4_sparse_over_base, gpu_sparse_m16_over_sparse_m4, and
  bench/paper_size_step.py's figures: paper_mfu (the paper-size model, random weights,
  bf16, one optimizer step of batch 8, over the GPU's data-sheet bf16 peak; target
  >= 0.45), paper_step_s, paper_step_over_gemm_peak, paper_peak_memory_gib, ...

The last line holds the figures as ``name=value`` pairs (ratios: the median).
"""

import argparse
import functools
import logging
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (ROOT, audio_batch, corpus_like, frozen_weights,  # noqa: E402
                          gemm_flops_per_s, llm_as_recipes_train, model_dirs,
                          optimizer_for, quantiles, recipe_model, restore_frozen,
                          step_flops, timed, train_step, with_plain_lora_dropout)

# Clips like the default synthetic corpus's training set (mowe/synth, size default):
# per task its share, duration range (s), an instruction and answer lengths (words).


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--quick", action="store_true",
                        help="tiny random models, 2 rounds, few clips: checks the script runs")
    parser.add_argument("--pretrained_dir", default=os.path.join(ROOT, "pretrained"),
                        help="bundled models (random ones of the same size if missing)")
    parser.add_argument("--random_models", action="store_true",
                        help="random models even if the bundled ones exist")
    demo_manifest = os.path.join(ROOT, "egs", "synthetic", "data", "default_seed1234",
                                 "clean", "train.json")
    parser.add_argument("--manifest",
                        default=demo_manifest if os.path.isfile(demo_manifest) else None,
                        help="take clip durations, instructions and answers from this "
                             "manifest (e.g. the synthetic corpus's train.json) instead of "
                             "the built-in corpus-like set (audio is noise either way); "
                             "default: the demo's corpus if `make demo` made it")
    parser.add_argument("--decode_clips", type=int, default=32)
    parser.add_argument("--decode_batch", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=24)
    parser.add_argument("--padding_batches", type=int, default=4,
                        help="batches of each kind timed per round for the bucketing ratio")
    parser.add_argument("--gemm_size", type=int, default=2048)
    parser.add_argument("--skip", default="",
                        help="comma list of parts to skip: gemm,padding,plain,mowe,decode,"
                             "systems,paper (paper: the paper-size GPU step, CUDA only)")
    parser.add_argument("--paper_compile", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="paper-size GPU step: also time it with its layers "
                             "torch.compile'd (the faster is paper_mfu; about a minute of "
                             "compilation on an H200)")
    import paper_size_step

    parser.add_argument("--paper_compile_mode", default="default",
                        choices=paper_size_step.COMPILE_MODES,
                        help="torch.compile's mode for the paper-size step (e.g. "
                             "reduce-overhead: CUDA graphs)")
    parser.add_argument("--workdir", default=None, help="where to save random models")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.decode_clips, args.decode_batch = 4, 2
        args.max_new_tokens, args.padding_batches, args.gemm_size = 4, 2, 256
    return args






# ------------------------------------------------------------------------ models
























# ------------------------------------------------------------------- the parts
class Figures:
    """Per-round values of each ratio, and single values."""

    def __init__(self):
        self.rounds, self.single, self.notes = {}, {}, []

    def add(self, name, value):
        self.rounds.setdefault(name, []).append(value)

    def report(self, targets):
        print("figure                            median   [q1, q3]          target")
        pairs = []
        for name, values in self.rounds.items():
            median, q1, q3 = quantiles(values)
            print(f"{name:32s} {median:8.3f}   [{q1:.3f}, {q3:.3f}]   {targets.get(name, '')}")
            pairs.append(f"{name}={median:.3f}")
            pairs.append(f"{name}_iqr={q3 - q1:.3f}")
        for name, value in self.single.items():
            print(f"{name:32s} {value:8.3f}   (one value)       {targets.get(name, '')}")
            pairs.append(f"{name}={value:.3f}")
        for note in self.notes:
            print(note)
        print(" ".join(pairs))


def padding_part(model, clips, batch_size, args, device):
    """Padding shares over an epoch and the rounds' timing closures for the ratio of
    bucketed to shuffled step time (same clips, same count of batches)."""
    import numpy as np

    from mowe.data.batching import (BucketBatchSampler, audio_token_estimate, bucket_keys,
                                    padded_share)

    tokens, seconds, prefixes = [], [], []
    for length, instruction, answer, _ in clips:
        prefix, suffix = model.prompt_ids(instruction)
        tokens.append(len(prefix) + len(suffix) + len(model.answer_ids(answer))
                      + audio_token_estimate(model, length))
        seconds.append(length)
        prefixes.append(len(prefix))
    costs = bucket_keys(list(zip(tokens, seconds)))
    rng = np.random.default_rng(1)
    order = rng.permutation(len(clips)).tolist()
    shuffled = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    sampler = BucketBatchSampler(costs, batch_size, pool_batches=16, seed=1)
    sampler.set_epoch(1)
    bucketed = list(sampler)
    shares = {"padded_tokens_share_before": padded_share(shuffled, tokens),
              "padded_tokens_share_after": padded_share(bucketed, tokens),
              "padded_audio_share_before": padded_share(shuffled, seconds),
              "padded_audio_share_after": padded_share(bucketed, seconds)}
    padded_positions = sum(len(batch) * max(tokens[i] for i in batch) for batch in shuffled)
    packed_positions = sum(prefixes[batch[0]] + sum(tokens[i] - prefixes[batch[0]]
                                                    for i in batch) for batch in shuffled)
    shares["llm_positions_packed_over_padded"] = packed_positions / padded_positions
    # timed: the same pool of clips as shuffled batches and as the sampler's batches
    pool = order[:args.padding_batches * batch_size]
    timed_sampler = BucketBatchSampler([costs[i] for i in pool], batch_size,
                                       pool_batches=args.padding_batches, seed=2)
    timed_sampler.set_epoch(1)
    kinds = {"shuffled": [[pool[i] for i in range(b, b + batch_size)]
                          for b in range(0, len(pool), batch_size)],
             "bucketed": [[pool[i] for i in batch] for batch in timed_sampler]}
    batches = {kind: [audio_batch([clips[i] for i in batch], device, seed=n)
                      for n, batch in enumerate(value)] for kind, value in kinds.items()}
    return shares, batches


def run(args):
    logging.disable(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")
    from routing_overhead import spread_routing

    from mowe.models.adapters import LinearDownsampleAdapter
    from mowe.data.batching import decoding_order
    from mowe.models.encoders import SmallEncoder, WhisperEncoder
    from mowe.models.llm import LanguageModel
    from mowe.models.mixture import MixtureOfWeakEncoders
    from mowe.models.audio_llm import AudioLLM

    skip = set(filter(None, args.skip.split(",")))
    begun = time.perf_counter()
    torch.manual_seed(0)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mowe_bench_")
    whisper_dir, llm_dir, real = model_dirs(args, workdir)
    cpu = torch.device("cpu")
    figures = Figures()
    print(f"clips: {args.manifest or 'built-in corpus-like set'}")
    print(f"models: {'bundled ' + args.pretrained_dir if real else 'random, same sizes'}"
          f"{' (quick: tiny)' if args.quick else ''}; torch threads "
          f"{torch.get_num_threads()}; rounds {args.rounds}; "
          f"load average {os.getloadavg()[0]:.2f}")

    # the default recipe's model, in training (padding, FLOP/s) and decoding
    recipe = recipe_model(whisper_dir, llm_dir, workdir, args.quick).to(cpu).train()
    recipe_opt = optimizer_for(recipe)
    # the same model as it trained before fused AdamW and the quarter-draw LoRA dropout
    plain = None
    if "plain" not in skip:
        plain = with_plain_lora_dropout(
            recipe_model(whisper_dir, llm_dir, workdir, args.quick).to(cpu).train())
        plain.load_state_dict(recipe.state_dict())
        plain_opt = optimizer_for(plain, fused=False)
    clips = corpus_like(700 if not args.quick else 64, manifest=args.manifest)
    shares, pad_batches = padding_part(recipe, clips, 4, args, cpu)
    figures.single.update(shares)

    # routing_overhead.py's configurations (batch 8 of 5 s clips, spread routing)
    mowe_models = {}
    if "mowe" not in skip:
        def mowe_models_on(device):
            base = WhisperEncoder(whisper_dir, os.path.join(workdir, "cache"))
            llm = LanguageModel(llm_dir, lora_rank=8, lora_targets=["q_proj", "v_proj"])
            adapter = functools.partial(LinearDownsampleAdapter, output_dim=512,
                                        num_tokens=25, frames_per_token=10)
            built = {}
            for name, count in (("base", 0), ("sparse_m4", 4), ("sparse_m16", 16)):
                mix = None
                if count:
                    pool = [functools.partial(SmallEncoder, d_model=128, num_layers=2,
                                              num_heads=4) for _ in range(count)]
                    mix = functools.partial(MixtureOfWeakEncoders, encoders=pool,
                                            routers=["indep", "dep"], dispatch="sparse")
                model = AudioLLM(base, llm, adapter, mix).to(device).train()
                if model.mixture is not None:
                    spread_routing(model.mixture)
                built[name] = (model, optimizer_for(model))
            batch_size = 2 if args.quick else 8
            wav = torch.randn(batch_size, 5 * 16000, generator=torch.Generator()
                              .manual_seed(0)) * 0.1
            batch = (wav.to(device), torch.ones(batch_size, device=device),
                     ["Transcribe the speech in this clip, please."] * batch_size,
                     ["the quick brown fox jumps over the lazy dog near the river bank"]
                     * batch_size)
            return built, batch
        devices = [cpu] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for device in devices:
            mowe_models[device.type] = mowe_models_on(device)

    # decoding set: test-like clips, eval mode
    decode_clips = corpus_like(args.decode_clips, seed=5, manifest=args.manifest)
    # recipes/decode.py's order: by task, longest first within a task
    order = decoding_order([(index, clip[3], clip[0]) for index, clip in enumerate(decode_clips)])
    decode_clips = [decode_clips[index] for index in order]

    singles = [audio_batch([clip], cpu, seed=n) for n, clip in enumerate(decode_clips)]
    groups = []
    for start in range(0, len(singles), args.decode_batch):
        part = singles[start:start + args.decode_batch]
        samples = max(s[0].shape[1] for s in part)
        wav = torch.zeros(len(part), samples)
        for row, single in enumerate(part):
            wav[row, :single[0].shape[1]] = single[0][0]
        lens = torch.tensor([s[0].shape[1] / samples for s in part])
        groups.append((wav, lens, [s[2][0] for s in part]))

    def decode_one_by_one():
        return [recipe.generate(*single[:3], max_new_tokens=args.max_new_tokens)[0]
                for single in singles]

    def prefill_one_by_one():
        for single in singles:
            recipe.generate(*single[:3], max_new_tokens=1)

    def decode_batched():
        texts = []
        for group in groups:
            texts += recipe.generate(*group, max_new_tokens=args.max_new_tokens)
        return texts

    # flops of a recipe step (counted once per batch kind) and of the MoWE step
    flops = {}
    if "gemm" not in skip:
        flops["recipe"] = [step_flops(recipe, recipe_opt, b) for b in pad_batches["bucketed"]]

    # training as the recipes train (frozen LLM in bf16 where native); decoding in the
    # spec's float32, as recipes/decode.py rebuilds the model
    spec_weights = frozen_weights(recipe.llm)
    train_dtype = llm_as_recipes_train(*([recipe] + ([plain] if plain is not None else [])))
    print(f"frozen LLM in training: {str(train_dtype).replace('torch.', '')}; decoding: "
          "float32", flush=True)
    print(f"set up in {time.perf_counter() - begun:.0f} s", flush=True)
    # warm-up
    for batch in pad_batches["shuffled"][:1] + pad_batches["bucketed"][:1]:
        train_step(recipe, recipe_opt, batch)
        if plain is not None:
            train_step(plain, plain_opt, batch)
    for built, batch in mowe_models.values():
        for model, opt in built.values():
            train_step(model, opt, batch)

    for round_index in range(args.rounds):
        started = time.perf_counter()
        if "gemm" not in skip:
            peak = gemm_flops_per_s(args.gemm_size, cpu)
        if "padding" not in skip or "gemm" not in skip:
            recipe.train()
            llm_as_recipes_train(recipe)
            spent = {"shuffled": 0.0, "bucketed": 0.0}
            for pair in zip(pad_batches["shuffled"], pad_batches["bucketed"]):
                for kind, batch in zip(("shuffled", "bucketed"), pair):
                    spent[kind] += timed(lambda: train_step(recipe, recipe_opt, batch),
                                         cpu)[0]
            figures.add("bucketed_over_shuffled_step", spent["bucketed"] / spent["shuffled"])
            recipe.pack_rows = False
            padded_spent = sum(timed(lambda: train_step(recipe, recipe_opt, batch), cpu)[0]
                               for batch in pad_batches["shuffled"])
            recipe.pack_rows = True
            figures.add("packed_over_padded_step", spent["shuffled"] / padded_spent)
            if plain is not None:
                plain_spent = sum(timed(lambda: train_step(plain, plain_opt, batch), cpu)[0]
                                  for batch in pad_batches["bucketed"])
                figures.add("recipe_step_over_plain_step", spent["bucketed"] / plain_spent)
            fp32_spent = spent["bucketed"]
            if train_dtype != torch.float32:  # the same batches, the spec's float32 LLM
                restore_frozen(recipe.llm, spec_weights)
                fp32_spent = sum(timed(lambda: train_step(recipe, recipe_opt, batch), cpu)[0]
                                 for batch in pad_batches["bucketed"])
                figures.add("bf16_llm_over_fp32_llm_step", spent["bucketed"] / fp32_spent)
            if "gemm" not in skip:
                # the float32 step (the same figure on every machine), and the step as
                # the recipes train it (frozen LLM in bf16 where native), over the fp32
                # GEMM peak
                achieved = sum(flops["recipe"]) / fp32_spent
                figures.add("train_step_over_gemm_peak", achieved / peak)
                figures.add("step_gflops_per_s", achieved / 1e9)
                figures.add("gemm_gflops_per_s", peak / 1e9)
                if train_dtype != torch.float32:
                    figures.add("recipe_step_over_gemm_peak",
                                sum(flops["recipe"]) / spent["bucketed"] / peak)
                    figures.add("gemm_bf16_gflops_per_s",
                                gemm_flops_per_s(args.gemm_size, cpu, torch.bfloat16) / 1e9)
        restore_frozen(recipe.llm, spec_weights)  # decoding: the spec's float32 weights
        for device_type, (built, batch) in mowe_models.items():
            device = torch.device(device_type)
            prefix = "" if device_type == "cpu" else "gpu_"
            times = {name: timed(lambda m=m, o=o: train_step(m, o, batch), device)[0]
                     for name, (m, o) in built.items()}
            figures.add(prefix + "mowe_m4_sparse_over_base", times["sparse_m4"] / times["base"])
            figures.add(prefix + "sparse_m16_over_sparse_m4",
                        times["sparse_m16"] / times["sparse_m4"])
            if device_type == "cuda":
                peak_gpu = gemm_flops_per_s(8192, device)
                if round_index == 0:
                    model, opt = built["sparse_m4"]
                    flops["gpu"] = step_flops(model, opt, batch)
                figures.add("gpu_train_step_over_gemm_peak",
                            flops["gpu"] / times["sparse_m4"] / peak_gpu)
        print(f"  training steps done at {time.perf_counter() - started:.0f} s", flush=True)
        if "decode" not in skip:
            recipe.eval()
            sequential, alone = timed(decode_one_by_one, cpu)
            batched, together = timed(decode_batched, cpu)
            figures.add("batched_over_sequential_decode", batched / sequential)
            figures.add("decode_prefill_share", timed(prefill_one_by_one, cpu)[0] / sequential)
            figures.add("decode_identical", sum(a == b for a, b in zip(alone, together))
                        / len(alone))
            answer_tokens = sum(len(recipe.tokenizer(t, add_special_tokens=False).input_ids)
                                + 1 for t in together)
            figures.add("decode_tokens_per_s", answer_tokens / batched)
            figures.add("decode_tokens_per_s_one_by_one", answer_tokens / sequential)
        print(f"round {round_index + 1}/{args.rounds}: {time.perf_counter() - started:.0f} s, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if "systems" not in skip:
        if torch.get_num_threads() >= 2:
            import concurrent_systems

            print("two systems' training, one after the other and at once ...", flush=True)
            shared = concurrent_systems.measure(
                (whisper_dir, llm_dir), workdir, args.quick, args.manifest, args.rounds,
                steps=2 if args.quick else 6)
            for ratio in shared["concurrent_over_sequential_systems"]:
                figures.add("concurrent_over_sequential_systems", ratio)
            figures.notes.append("systems at once: {} thread(s) each, one after the other: "
                                 "{}".format(shared["threads"][1], shared["threads"][0]))
        else:
            figures.notes.append("concurrent_over_sequential_systems: not measured (one "
                                 "CPU thread: nothing to share out)")
    if torch.cuda.is_available() and "paper" not in skip:
        import paper_size_step

        paper_args = paper_size_step.parse_args(
            ["--device", "cuda", "--compile_mode", args.paper_compile_mode]
            + (["--compile"] if args.paper_compile else []))
        paper_args.workdir = os.path.join(workdir, "paper_size")
        figures.single.update(paper_size_step.measure(paper_args))
    if flops.get("recipe"):
        figures.notes.append(f"recipe step: {sum(flops['recipe']) / len(flops['recipe']) / 1e9:.1f}"
                             f" GFLOP per batch of 4 (forward + backward)")
    return figures


TARGETS = {"train_step_over_gemm_peak": ">= 0.5", "mowe_m4_sparse_over_base": "<= 1.10",
           "sparse_m16_over_sparse_m4": "<= 1.05", "batched_over_sequential_decode": "<= 0.25",
           "decode_identical": "= 1", "padded_tokens_share_after": "< before",
           "bucketed_over_shuffled_step": "< 1", "recipe_step_over_plain_step": "< 1",
           "packed_over_padded_step": "< 1", "llm_positions_packed_over_padded": "< 1",
           "concurrent_over_sequential_systems": "< 1", "bf16_llm_over_fp32_llm_step": "< 1",
           "gpu_mowe_m4_sparse_over_base": "<= 1.10", "gpu_sparse_m16_over_sparse_m4": "<= 1.05",
           "paper_mfu": ">= 0.45"}


def main(argv=None):
    args = parse_args(argv)
    figures = run(args)
    figures.report(TARGETS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
