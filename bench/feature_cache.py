#!/usr/bin/env python3
"""What the feature cache (recipes/extract_features.py) saves, on a recipe's real model
and data.

Loads the model of a recipe YAML (default: egs/synthetic with the bundled Whisper
tiny.en, frozen, + SmolLM2-135M), then

1. runs the features step over the training manifest (or its first ``--clips``) and
   times it: the stage's own cost;
2. times training steps (loading the batch + forward + backward + optimizer step) on the
   same batches with the cache and without, interleaved (live, cached, cached, live...)
   so that machine load hits both alike; the first ``--warmup`` pairs are not counted.
   Both wall-clock and CPU time of this process (``time.process_time``, all threads) are
   recorded: on a machine shared with other jobs the CPU time is the steadier measure;
3. compares the loss of float32 features with the same features rounded to float16.

Prints the medians, the ratio and the time saved per epoch and per sweep; the last line
is ``name=value`` pairs.

Usage: python bench/feature_cache.py --data_folder DIR [--steps 20] [--system mowe]
       [--clips 200] [--feature_cache DIR] [--threads 1]
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(REPO, "egs", "synthetic", "conf",
                                                         "train.yaml"))
    parser.add_argument("--data_folder", required=True, help="holds train/valid/test.json")
    parser.add_argument("--pretrained_dir", default=os.path.join(REPO, "pretrained"))
    parser.add_argument("--system", default="mowe", choices=["mowe", "baseline"],
                        help="baseline: --spec={mixture: null}")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clips", type=int, default=0,
                        help="features of the first N training clips only (0: all)")
    parser.add_argument("--feature_cache", default=None, help="default: a temp folder")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--spec", default="",
                        help='extra model-spec overrides, e.g. "whisper_pad_to_30s: True"')
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 keeps the CPU time of a "
                             "step steady on a loaded machine (no spinning thread pool)")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from speechbrain.dataio.dataloader import make_dataloader

    from mowe.data.collate import SkipUnreadableClips
    from mowe.data.precomputed_features import FeatureCache, extract, open_cache
    from mowe.recipe.hparams import dataset, load_recipe_hparams

    argv = [args.config, "--output_folder", tempfile.mkdtemp(), "--data_folder",
            args.data_folder, "--pretrained_dir", args.pretrained_dir,
            f"--batch_size={args.batch_size}"]
    spec = [item for item in (args.spec, "mixture: null" if args.system == "baseline"
                              else "") if item]
    if spec:
        argv.append("--spec={" + ", ".join(spec) + "}")
    _, _, _, hparams = load_recipe_hparams(argv)
    model = hparams["model"]
    trim = model.max_audio_seconds
    train = dataset(hparams["train_manifest"], hparams.get("max_duration"), trim)
    if args.clips:
        keep = set(sorted(train.data_ids)[:args.clips])
        train = train.filtered_sorted(key_test={"id": lambda utt: utt in keep})
    root = args.feature_cache or tempfile.mkdtemp(prefix="features_")
    cache = FeatureCache(root, model)

    start, start_cpu = time.perf_counter(), time.process_time()
    counts = extract(model, cache, [train], batch_size=args.batch_size)
    stage, stage_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    clips = counts["encoded"] + counts["cached"]
    size = sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(cache.folder) for name in names)
    print(f"features stage: {clips} clips ({counts['encoded']} encoded) in {stage:.1f} s "
          f"({1000 * stage / max(clips, 1):.0f} ms/clip; CPU {stage_cpu:.1f} s), "
          f"{size / 1e6:.0f} MB on disk")

    cache = open_cache(root, model)
    cached_train = dataset(hparams["train_manifest"], hparams.get("max_duration"), trim,
                           feature_cache=cache)
    ids = sorted(train.data_ids)
    torch.manual_seed(0)
    order = [ids[i] for i in torch.randperm(len(ids)).tolist()]
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    batches = batches[: args.steps + args.warmup]
    collate = SkipUnreadableClips()

    def load(data, utts):
        wanted = set(utts)
        subset = data.filtered_sorted(key_test={"id": lambda utt: utt in wanted})
        return next(iter(make_dataloader(subset, batch_size=len(utts), collate_fn=collate)))

    model.train()
    optimizer = hparams["opt_class"]([p for p in model.parameters() if p.requires_grad])
    times = {"live": [], "cached": []}
    cpu = {"live": [], "cached": []}
    loads = {"live": [], "cached": []}
    for index, utts in enumerate(batches):
        for mode, data in (("live", train), ("cached", cached_train)) if index % 2 == 0 \
                else (("cached", cached_train), ("live", train)):  # ABBA order
            begin, begin_cpu = time.perf_counter(), time.process_time()
            batch = load(data, utts)
            loaded = time.perf_counter()
            feats = getattr(batch, "base_feats", None) if mode == "cached" else None
            out = model(*batch.sig, batch.instruction, batch.answer, base_feats=feats)
            loss = out.next_token_loss + 0.1 * out.mowe_loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end, end_cpu = time.perf_counter(), time.process_time()
            if index >= args.warmup:
                times[mode].append(end - begin)
                cpu[mode].append(end_cpu - begin_cpu)
                loads[mode].append(loaded - begin)
        if index >= args.warmup:
            print(f"step {index}: live {times['live'][-1]:.2f} s (cpu {cpu['live'][-1]:.2f} s), "
                  f"cached {times['cached'][-1]:.2f} s (cpu {cpu['cached'][-1]:.2f} s)",
                  flush=True)
    if model.feature_cache_misses:
        print(f"WARNING: {model.feature_cache_misses} cache misses")
    live, cached = statistics.median(times["live"]), statistics.median(times["cached"])
    live_cpu, cached_cpu = statistics.median(cpu["live"]), statistics.median(cpu["cached"])

    model.eval()
    diffs = []
    with torch.no_grad():
        for utts in batches[:3]:
            batch = load(cached_train, utts)
            exact = model(*batch.sig, batch.instruction, batch.answer,
                          base_feats=batch.base_feats).next_token_loss.item()
            from mowe.data.precomputed_features import CachedFeatures

            half = [CachedFeatures(e.feats.half().float(), e.length) for e in batch.base_feats]
            rounded = model(*batch.sig, batch.instruction, batch.answer,
                            base_feats=half).next_token_loss.item()
            diffs.append(abs(exact - rounded) / abs(exact))

    steps_per_epoch = -(-len(ids) // args.batch_size) if not args.clips else \
        -(-len(dataset(hparams["train_manifest"], hparams.get("max_duration"), trim))
          // args.batch_size)
    saved_epoch = steps_per_epoch * (live - cached)
    saved_epoch_cpu = steps_per_epoch * (live_cpu - cached_cpu)
    print(f"training step ({args.system}, batch {args.batch_size}, median of {len(times['live'])}): "
          f"live {live:.2f} s (load {statistics.median(loads['live']):.3f} s), cached "
          f"{cached:.2f} s (load {statistics.median(loads['cached']):.3f} s); "
          f"cached/live = {cached / live:.2f}")
    paired = statistics.median(c / l for c, l in zip(cpu["cached"], cpu["live"]))
    print(f"CPU time per step: live {live_cpu:.2f} s, cached {cached_cpu:.2f} s; "
          f"cached/live = {cached_cpu / live_cpu:.2f} (median of per-batch ratios {paired:.2f}; "
          f"totals {sum(cpu['cached']) / sum(cpu['live']):.2f})")
    print(f"per epoch ({steps_per_epoch} steps): {saved_epoch / 60:.1f} min wall "
          f"({saved_epoch_cpu / 60:.1f} min CPU) saved; the stage costs {stage / 60:.1f} min "
          f"for {clips} clips, once per sweep")
    print(f"float16 features: relative loss change {max(diffs):.1e} (max over 3 batches)")
    print(f"cached_over_live={cached / live:.3f} cpu_cached_over_live="
          f"{cached_cpu / live_cpu:.3f} live_step_s={live:.3f} cached_step_s={cached:.3f} "
          f"live_cpu_s={live_cpu:.3f} cached_cpu_s={cached_cpu:.3f} "
          f"stage_s={stage:.1f} stage_cpu_s={stage_cpu:.1f} stage_clips={clips} steps_per_epoch={steps_per_epoch} "
          f"saved_per_epoch_s={saved_epoch:.0f} fp16_rel_loss_change={max(diffs):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
