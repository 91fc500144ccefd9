#!/usr/bin/env python3
"""Two systems' training, one after the other with every core, against both at once
with the cores shared out (what a recipe's ``--system_jobs`` does on CPUs).

Two worker processes each hold the default recipe's model (MoWE M=4; base-encoder
features cached, as the recipes train) and their own batches of corpus-like clips. Every
round times both ways, side by side:

- one after the other: worker A runs its steps with all threads, then worker B;
- at once: both run their steps at the same time, each with ``threads // 2`` threads.

``concurrent_over_sequential_systems`` is the wall time at once over the wall time one
after the other (median over rounds, with its spread): below 1, training the systems of
a recipe at once finishes sooner.

Usage: ``python bench/concurrent_systems.py [--rounds 3] [--steps 6] [--quick]`` (also
part of ``bench/run_all.py``).
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def worker(connection, model_dirs, workdir, quick, manifest, seed, steps):
    """Build a recipe model and its batches, then time ``steps`` training steps with
    the thread count each message names (None: stop)."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    from bench_common import (audio_batch, corpus_like, llm_as_recipes_train, optimizer_for,
                         recipe_model, train_step)

    from mowe.data.precomputed_features import CachedFeatures

    torch.manual_seed(seed)
    model = recipe_model(*model_dirs, workdir, quick).train()
    llm_as_recipes_train(model)  # frozen LLM in bf16 where the CPU has native bf16
    optimizer = optimizer_for(model)
    clips = corpus_like(4 * (steps + 1), seed=seed, manifest=manifest)
    batches = []
    for start in range(0, len(clips), 4):
        wav, lens, instructions, answers = audio_batch(clips[start:start + 4],
                                                       torch.device("cpu"), seed=start)
        with torch.no_grad():  # the recipes read the frozen base encoder's features cached
            feats, feat_lens = model.base_encoder(wav, lens)
        cached = [CachedFeatures(feats[row, :int(length)], length)
                  for row, length in enumerate(feat_lens)]
        batches.append((wav, lens, instructions, answers, cached))
    train_step(model, optimizer, batches[0])  # warm-up
    connection.send("ready")
    while (threads := connection.recv()) is not None:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        for batch in batches[1:]:
            train_step(model, optimizer, batch)
        connection.send(time.perf_counter() - start)


def measure(model_dirs, workdir, quick=False, manifest=None, rounds=3, steps=6):
    """``{"concurrent_over_sequential_systems": [one ratio per round], ...}``.

    Parameters
    ----------
    model_dirs : tuple of str
        (Whisper folder, LLM folder) of the recipe model.
    workdir : str
        Scratch folder (the models' caches).
    quick : bool
        Tiny models (a smoke test: the figures mean nothing).
    manifest : str, optional
        Take the clips' durations and texts from this manifest.
    rounds, steps : int
        Timed rounds; training steps per worker and round.

    Returns
    -------
    dict
        Per-round ratios, and the threads each way.
    """
    threads = torch.get_num_threads()
    shared = max(1, threads // 2)
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for seed in (1, 2):
        ours, theirs = context.Pipe()
        process = context.Process(target=worker, args=(theirs, model_dirs, workdir, quick,
                                                       manifest, seed, steps), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    try:
        for pipe in pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a bench worker failed to start")
        ratios = []
        for _ in range(rounds):
            start = time.perf_counter()
            for pipe in pipes:  # one after the other, every thread each
                pipe.send(threads)
                pipe.recv()
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            for pipe in pipes:  # at once, the threads shared out
                pipe.send(shared)
            for pipe in pipes:
                pipe.recv()
            ratios.append((time.perf_counter() - start) / sequential)
        for pipe in pipes:
            pipe.send(None)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    return {"concurrent_over_sequential_systems": ratios, "threads": (threads, shared)}


def main(argv=None):
    from bench_common import model_dirs, quantiles

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="steps per worker and round")
    parser.add_argument("--quick", action="store_true", help="tiny random models")
    parser.add_argument("--random_models", action="store_true")
    parser.add_argument("--pretrained_dir", default=os.path.join(os.path.dirname(HERE),
                                                                 "pretrained"))
    parser.add_argument("--manifest", default=None)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="mowe_bench_")
    whisper, llm, _ = model_dirs(args, workdir)
    result = measure((whisper, llm), workdir, args.quick, args.manifest, args.rounds,
                     args.steps)
    median, low, high = quantiles(result["concurrent_over_sequential_systems"])
    threads, shared = result["threads"]
    print(f"threads: {threads} one after the other, {shared} each at once; rounds: "
          + ", ".join(f"{r:.3f}" for r in result["concurrent_over_sequential_systems"]))
    print(f"concurrent_over_sequential_systems={median:.3f} "
          f"concurrent_over_sequential_systems_iqr={high - low:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
