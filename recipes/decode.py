#!/usr/bin/env python3
"""Decode a test manifest with a trained AudioLLM; write a hypothesis file (JSON lines).

Usage: python recipes/decode.py HPARAMS.yaml --test_manifest=M --hyp_file=OUT.jsonl
       [--decode_config=conf/decode.yaml] [--beam_size=4 ...] [--key=value ...]

Generation settings (``mowe.recipe.hparams.DECODE_OPTIONS``: beam_size, do_sample, temperature,
top_k, top_p, repetition_penalty, length_penalty, no_repeat_ngram_size, max_new_tokens)
come from ``--decode_config`` (a recipe's ``conf/decode.yaml``) and are overridden one
by one on the command line; unset ones keep greedy search and the YAML's
``max_new_tokens``.

Loads the best checkpoint (lowest validation loss) from the YAML's checkpointer, or with
``--checkpoint_epoch=N`` the one saved at the end of epoch N (kept when training ran with
``keep_epoch_checkpoints: true``; for learning curves), and
writes one line per utterance: ``{"id", "task", "instruction", "hyp", "ref",
"selected"}`` (``selected``: weak encoder chosen per router, or null). Each line is
flushed and synced as it is written; rerunning skips utterances already in the file
(a line cut off by a kill is dropped), so an interrupted decode resumes; SIGTERM or
SIGUSR1 (Slurm's pre-timeout signal) ends it after the current batch with exit code 75.
Clips are decoded in batches of ``decode_batch_size`` (default: ``batch_size``),
grouped by task and longest first within a task (``mowe.data.batching.decoding_order``:
a batch of one task wastes fewer steps on finished answers); batched answers equal
one-by-one answers. ``HYP_FILE.ckpt`` records the checkpoint and the generation settings
decoded with: hypotheses of another checkpoint or other settings are moved to
``HYP_FILE.stale`` and decoding starts over.

``--feature_cache=DIR``: read the frozen base encoder's output from the features step's
cache (``recipes/extract_features.py``); clips it lacks are encoded live and counted.

Job arrays: ``--shard J/N`` decodes every N-th utterance (sorted ids) into
``HYP_FILE.shardJofN``; ``python recipes/decode.py --merge_shards N --hyp_file H
--test_manifest M`` joins the N shards into ``H`` (atomically), checking that every
test utterance is there exactly once.
"""

import json
import logging
import os
import sys
import time

import torch
from tqdm import tqdm

from mowe.utils.atomic import OutputPathError, check_writable, write_text_atomic
from mowe.data.precomputed_features import FeatureCacheError, open_cache
from mowe.recipe.hparams import (dataset, decode_settings, load_recipe_hparams, parse_shard,
                                 pop_option)
from mowe.train.checkpoints import recover_epoch, saved_epochs
from mowe.train.resume import EXIT_PREEMPTED, CheckpointFormatError, PreemptionFlag
from mowe.train.threads import ThreadShare

logger = logging.getLogger("mowe.decode")


def finished_ids(path):
    """Ids already decoded in ``path`` (a cut-off last line is dropped)."""
    done = set()
    if not os.path.isfile(path):
        return done
    good = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["id"])
                good.append(line)
            except (json.JSONDecodeError, KeyError):
                logger.warning("dropping an incomplete line of %s", path)
    write_text_atomic(path, "".join(good))
    return done


def check_checkpoint_stamp(hyp_file, checkpoint_path, generation=None):
    """Keep ``hyp_file`` only if it was decoded with ``checkpoint_path`` and ``generation``.

    ``HYP_FILE.ckpt`` records the checkpoint a hypothesis file comes from and, on its
    second line, the generation settings (JSON). When either differs (the model was
    trained further, or ``--beam_size`` or another decoding option changed), the old file
    is moved aside to ``HYP_FILE.stale`` and decoding starts over. A stamp without the
    second line (written before settings were recorded) is checked on the checkpoint
    alone. Returns True when the file was moved aside.
    """
    stamp = hyp_file + ".ckpt"
    current = [os.path.abspath(str(checkpoint_path)),
               json.dumps(generation or {}, sort_keys=True, default=str)]
    previous = (open(stamp, encoding="utf-8").read().strip().split("\n", 1)
                if os.path.isfile(stamp) else None)
    stale = (previous is not None and previous != current[:len(previous)]
             and os.path.isfile(hyp_file))
    if stale:
        logger.warning("%s was decoded with %s, not %s: moved to %s.stale, decoding anew",
                       hyp_file, " ".join(previous), " ".join(current), hyp_file)
        os.replace(hyp_file, hyp_file + ".stale")
    write_text_atomic(stamp, "\n".join(current) + "\n")
    return stale


def shard_file(hyp_file, index, count):
    return f"{hyp_file}.shard{index}of{count}"


def merge_shards(hyp_file, count, test_manifest):
    """Join the shard files into ``hyp_file``; every test id exactly once."""
    from mowe.data import read_manifest

    expected = set(read_manifest(test_manifest))
    rows, seen = [], set()
    for index in range(1, count + 1):
        path = shard_file(hyp_file, index, count)
        if not os.path.isfile(path):
            sys.exit(f"error: {path} missing: decode job {index} of {count} did not run")
        for line in open(path, encoding="utf-8"):
            row = json.loads(line)
            if row["id"] not in seen:
                seen.add(row["id"])
                rows.append(line if line.endswith("\n") else line + "\n")
    missing = expected - seen
    if missing:
        sys.exit(f"error: {len(missing)} test utterances not decoded (e.g. "
                 f"{sorted(missing)[0]}): rerun the decode jobs")
    write_text_atomic(hyp_file, "".join(rows))
    logger.info("merged %d shards (%d utterances) into %s", count, len(rows), hyp_file)
    return 0


def main(argv):
    """Decode (or merge shards); an output path that cannot be written, or a checkpoint
    file refused by :func:`mowe.train.resume.safe_load`, ends with one ``error:`` line."""
    try:
        return decode(argv)
    except (OutputPathError, CheckpointFormatError, FeatureCacheError) as error:
        sys.exit(f"error: {error}")


def decode(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    import speechbrain as sb

    argv = list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    merge = pop_option(argv, "merge_shards")
    if merge is not None:
        hyp_file, manifest = pop_option(argv, "hyp_file"), pop_option(argv, "test_manifest")
        if not hyp_file or not manifest:
            sys.exit("error: --merge_shards needs --hyp_file and --test_manifest")
        check_writable(hyp_file)
        return merge_shards(hyp_file, int(merge), manifest)
    shard = pop_option(argv, "shard")
    shard = parse_shard(shard) if shard else None
    feature_root = pop_option(argv, "feature_cache")
    checkpoint_epoch = pop_option(argv, "checkpoint_epoch")
    if checkpoint_epoch is not None and not checkpoint_epoch.isdigit():
        sys.exit(f"error: --checkpoint_epoch must be an epoch number, got {checkpoint_epoch!r}")
    argv, generate_kwargs = decode_settings(argv)
    _, run_opts, _, hparams = load_recipe_hparams(argv)
    generate_kwargs.setdefault("max_new_tokens", hparams["max_new_tokens"])
    device = getattr(run_opts, "device", None) or "cpu"
    precision = run_opts.get("precision")
    if precision and precision != "fp32":
        # the stage driver passes --precision=bf16 with a GPU (it is training's option);
        # decoding keeps the spec's weights so that batched answers equal one-by-one ones
        logger.info("decoding with the spec's weights, no autocast: --precision=%s applies "
                    "to training only", precision)
    model = hparams["model"].to(device).eval()
    if checkpoint_epoch is None:
        checkpoint = hparams["checkpointer"].recover_if_possible(min_key="loss")
        if checkpoint is None:
            sys.exit(f"error: no checkpoint in {hparams['save_folder']}: train first")
    else:
        checkpoint = recover_epoch(hparams["checkpointer"], checkpoint_epoch)
        if checkpoint is None:
            kept = saved_epochs(hparams["checkpointer"])
            sys.exit(f"error: no checkpoint of epoch {checkpoint_epoch} in "
                     f"{hparams['save_folder']} (epochs kept: {kept or 'none'}); train with "
                     "--keep_epoch_checkpoints=True to keep every epoch's")
    hyp_file = hparams["hyp_file"]
    if shard:
        hyp_file = shard_file(hyp_file, *shard)
    check_writable(hyp_file)
    os.makedirs(os.path.dirname(os.path.abspath(hyp_file)), exist_ok=True)
    check_checkpoint_stamp(hyp_file, checkpoint.path, generate_kwargs)
    done = finished_ids(hyp_file)
    routers = model.mixture.router_kinds if model.mixture is not None else []
    cache = open_cache(feature_root, model)
    test = dataset(hparams["test_manifest"],
                   trim_seconds=getattr(model, "max_audio_seconds", None),
                   tasks=hparams.get("tasks"), feature_cache=cache)
    wanted = sorted(test.data_ids)
    if shard:
        wanted = wanted[shard[0] - 1::shard[1]]
    todo = [utt for utt in wanted if utt not in done]
    if not todo:
        logger.info("all %d utterances already decoded in %s", len(done), hyp_file)
        return 0
    logger.info("decoding %d utterances (%d done before) with %s; generation settings %s",
                len(todo), len(done), checkpoint.path, generate_kwargs)
    # By task, longest first within a task: answers of a batch end at about the same
    # step, padding waste is small, and an out-of-memory shows up at once.
    from speechbrain.dataio.dataset import FilteredSortedDynamicItemDataset

    from mowe.data.batching import decoding_order
    from mowe.data.collate import SkipUnreadableClips

    subset = FilteredSortedDynamicItemDataset(test, decoding_order(
        [(utt, test.data[utt].get("task") or test.data[utt].get("instruction"),
          float(test.data[utt].get("duration", 0.0))) for utt in todo]))

    unreadable = SkipUnreadableClips()  # such clips are logged, counted and not decoded
    # decode_batch_size: generation is memory-bound, so a batch of 8 costs little more
    # than one clip (bench/run_all.py: batched_over_sequential_decode); answers equal
    # one-by-one decoding (tests/unit/test_model.py)
    batch_size = hparams.get("decode_batch_size") or hparams["batch_size"]
    loader = sb.dataio.dataloader.make_dataloader(subset, batch_size=batch_size,
                                                  collate_fn=unreadable)
    stop = PreemptionFlag().install()  # SIGTERM/SIGUSR1: finish the batch, then exit 75
    thread_share = ThreadShare()  # more CPU threads once other systems' jobs end
    started, decoded = time.monotonic(), 0
    with open(hyp_file, "a", encoding="utf-8") as out, torch.no_grad():
        for batch in tqdm(loader, desc="decoding"):
            if stop.requested:
                logger.warning("%s: stopping; %s holds what is decoded, rerun to finish",
                               stop.requested, hyp_file)
                return EXIT_PREEMPTED
            if batch is None:  # no clip of this batch could be read
                continue
            thread_share.update()
            batch = batch.to(device)
            wavs, wav_lens = batch.sig
            hyps, selected = model.generate(wavs, wav_lens, batch.instruction,
                                            return_selected=True,
                                            base_feats=getattr(batch, "base_feats", None),
                                            **generate_kwargs)
            for i, utt in enumerate(batch.id):
                row = {"id": utt, "task": batch.task[i], "instruction": batch.instruction[i],
                       "hyp": hyps[i], "ref": batch.answer[i],
                       "selected": selected[i].tolist() if selected is not None else None,
                       "routers": routers}
                out.write(json.dumps(row) + "\n")
            decoded += len(batch.id)
            out.flush()
            os.fsync(out.fileno())
    # the decoding loop alone (no model loading): bench/gpu_check.py compares batch sizes
    logger.info("decoded %d utterances in %.2f s (batches of %d)", decoded,
                time.monotonic() - started, batch_size)
    if cache is not None:
        log = logger.warning if model.feature_cache_misses else logger.info
        log("feature cache: %d clips read from the cache, %d encoded live (cache misses)",
            model.feature_cache_hits, model.feature_cache_misses)
    if unreadable.skipped:
        logger.warning("%d test clips were not decoded: their audio could not be used (%s); "
                       "they are missing from %s", len(unreadable.skipped),
                       "; ".join(f"{u}: {r}" for u, r in list(unreadable.skipped.items())[:3]),
                       hyp_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
