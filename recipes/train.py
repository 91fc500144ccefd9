#!/usr/bin/env python3
"""Train an AudioLLM with MoWEBrain from a recipe YAML.

Usage: python recipes/train.py HPARAMS.yaml [--key=value ...] [SpeechBrain run options]

The YAML provides ``model``, ``opt_class``, ``epoch_counter``, ``checkpointer``,
``train_manifest``, ``valid_manifest``, ``batch_size`` and ``output_folder`` (see
``egs/synthetic/conf/train.yaml``). Training resumes from the newest checkpoint in
``save_folder``. Model-spec keys are overridden through the included spec, e.g.
``--spec "{mixture: null}"`` for the base-only baseline. ``--overrides_file=FILE``
(repeatable) applies a YAML file of overrides first (the paper's table rows). A recipe's
``conf/train.yaml`` may ``extends: SHARED.yaml`` (``mowe.recipe.hparams.expand_extends``).
Curves: ``tensorboard --logdir <output_folder>/tensorboard`` (``dashboard`` hparam).

Optional hparams: ``sorting`` (SpeechBrain's convention: ``random`` shuffles each epoch,
the default; ``ascending`` / ``descending`` order the clips by duration, e.g. to compare
runs batch for batch), ``sampling_weights`` (JSON ``{id: weight}``: weighted sampling with
replacement, one epoch = as many draws as training clips) and ``init_from`` (a save
folder of another run, e.g. the ASR-only first stage of two-stage training: its newest
checkpoint initialises the model when this run has no checkpoint of its own).

CTC warm-up (``mowe.train.ctc_warmup``): ``ctc_warmup_epochs: N`` first trains the audio front
end for N epochs on the ``ctc_warmup_tasks`` clips (default ``[asr]``) with a CTC loss
against the LLM's input embeddings (``ctc_warmup_lr``, ``ctc_warmup_batch_size``), its
checkpoints in ``<save_folder>/ctc_warmup`` (resumed when interrupted, loaded when done;
skipped once the multitask run has checkpoints) and its log in
``<output_folder>/ctc_warmup_log.txt`` (validation CTC loss and greedy-CTC WER).

Precomputed features: ``--feature_cache=DIR`` (the recipes' features step,
``recipes/extract_features.py``) makes the batches carry the frozen base encoder's cached output
instead of running it; clips the cache lacks are encoded live and counted.

Length-aware batching (``mowe.data.batching``), both deterministic per seed and epoch so
that a resumed run replays its epoch's batches and skips those already trained on:
``bucketing: True`` (with ``sorting: random``, no ``sampling_weights``) keeps batches of
``batch_size`` clips but draws each from a pool of ``bucket_pool_batches`` batches sorted
by LLM tokens (in steps of 8) then seconds: the same number of batches and optimizer
steps, less padding.
``max_batch_seconds: S`` instead batches by duration with SpeechBrain's
``DynamicBatchSampler`` (``num_buckets`` buckets): each batch holds at most S seconds of
padded audio and a varying number of clips. The global batch is then counted in seconds:
``global_batch_seconds: G`` sets the accumulation to ``round(G / (processes x S))``
batches per optimizer step (else ``grad_accumulation_factor``), and ``global_batch_size``
(a clip count) is not used.

Frozen LLM weights while training: ``train_llm_dtype: auto`` (the recipes' default)
casts them to bfloat16 where the device multiplies bf16 natively (a CPU with AMX or
AVX512-BF16, a GPU with bf16) and they were built in float32; ``float32`` /
``bfloat16`` / ``float16`` cast them so; ``null`` leaves them as the model spec built
them. LoRA and everything trained stay float32; decoding rebuilds the LLM from the spec
(``mowe.train.precision``). The log says which dtype and why.

Bad input: clips whose audio is missing, unreadable, empty or non-finite are skipped
and counted; an optimizer step with a non-finite loss or gradients is skipped and
counted, and more than ``--nonfinite_patience`` (default 3) in a row stop training with
exit code 1 (checkpoints saved before are kept).
"""

import json
import logging
import math
import os
import sys

import speechbrain as sb
import torch

from mowe.train.brain import MoWEBrain, NonFiniteLossError
from mowe.train.ctc_warmup import run_ctc_warmup
from mowe.data.precomputed_features import FeatureCacheError, open_cache
from mowe.train.precision import cast_frozen_parameters, native_bf16_reason, training_llm_dtype
from mowe.recipe.hparams import dataset, load_recipe_hparams, pop_option

logger = logging.getLogger("mowe.train")


def weighted_sampler(train, weights_file, seed):
    """SpeechBrain's reproducible weighted sampler over ``train`` from ``{id: weight}``."""
    from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler

    if not os.path.isfile(weights_file):
        sys.exit(f"error: sampling_weights file not found: {weights_file}")
    with open(weights_file, encoding="utf-8") as handle:
        weights = json.load(handle)
    missing = [i for i in train.data_ids if i not in weights]
    if missing:
        sys.exit(f"error: {weights_file} has no weight for {len(missing)} training clips "
                 f"(e.g. {missing[0]}); regenerate it with the training manifest")
    return ReproducibleWeightedRandomSampler([float(weights[i]) for i in train.data_ids],
                                             num_samples=len(train), replacement=True,
                                             seed=seed)


def initialise_from(model, folder, own_checkpointer):
    """Load the newest checkpoint of ``folder`` into ``model`` unless this run has one."""
    from speechbrain.utils.checkpoints import Checkpointer

    if own_checkpointer.find_checkpoint() is not None:
        logger.info("init_from ignored: resuming this run's own checkpoint")
        return
    if not os.path.isdir(folder):
        sys.exit(f"error: init_from folder not found: {folder} (train the first stage first)")
    source = Checkpointer(folder, recoverables={"model": model})
    if source.find_checkpoint() is None:
        sys.exit(f"error: init_from folder {folder} holds no checkpoint")
    from mowe.train.resume import CheckpointFormatError

    try:
        checkpoint = source.recover_if_possible()
    except CheckpointFormatError as error:
        sys.exit(f"error: init_from: {error}")
    logger.info("initialised the model from %s", checkpoint.path)


def plan_batches(hparams, world_size):
    """Per-process batch and accumulation steps that keep ``global_batch_size`` fixed.

    ``batch_size`` is the most clips one process holds at once; with ``W`` processes and
    a global batch ``G``, each process takes ``b = min(batch_size, G / W)`` clips and
    accumulates ``G / (W b)`` batches per optimizer step. Without ``global_batch_size``
    the hparams are used as they are.
    """
    target = hparams.get("global_batch_size")
    if not target:
        return hparams["batch_size"], hparams.get("grad_accumulation_factor", 1)
    target = int(target)
    if target % world_size:
        sys.exit(f"error: global_batch_size {target} is not divisible by {world_size} "
                 "processes")
    per_process = min(int(hparams["batch_size"]), target // world_size)
    while (target // world_size) % per_process:
        per_process -= 1
    return per_process, target // (world_size * per_process)


def batch_plan(hparams, world_size):
    """``(batch_size, grad_accumulation_factor)`` for the run: from ``global_batch_size``
    (:func:`plan_batches`), or, with ``max_batch_seconds`` (batches of varying clip
    count), from ``global_batch_seconds`` or ``grad_accumulation_factor``."""
    seconds = hparams.get("max_batch_seconds")
    if not seconds:
        return plan_batches(hparams, world_size)
    if float(seconds) <= 0:
        sys.exit(f"error: max_batch_seconds must be positive, not {seconds}")
    target = hparams.get("global_batch_seconds")
    if target:
        accumulation = max(1, round(float(target) / (world_size * float(seconds))))
    else:
        accumulation = int(hparams.get("grad_accumulation_factor", 1))
    if hparams.get("global_batch_size"):
        logger.info("max_batch_seconds=%s: batches vary in clips; global_batch_size is not "
                    "used (global batch: %d process(es) x %d batches of <= %s s)", seconds,
                    world_size, accumulation, seconds)
    return hparams["batch_size"], accumulation


def train_loader_kwargs(hparams, train, model):
    """The training loader's arguments: shuffled batches (``batch_size``), the ordered
    ones of ``sorting``, weighted sampling, or a length-aware batch sampler."""
    sorting = hparams.get("sorting", "random")
    workers = hparams.get("num_workers", 0)
    seed = hparams.get("seed", 0)
    if hparams.get("max_batch_seconds"):
        if sorting != "random" or hparams.get("sampling_weights"):
            sys.exit("error: max_batch_seconds batches by duration itself: use it with "
                     "sorting: random and without sampling_weights")
        from mowe.data.batching import duration_batch_sampler

        sampler = duration_batch_sampler(train, hparams["max_batch_seconds"],
                                         hparams.get("num_buckets", 10), seed,
                                         getattr(model, "max_audio_seconds", None))
        return {"batch_sampler": sampler, "num_workers": workers}
    if hparams.get("bucketing", False) and sorting == "random" \
            and not hparams.get("sampling_weights"):
        from mowe.data.batching import BucketBatchSampler, bucket_keys, llm_token_counts

        sampler = BucketBatchSampler(bucket_keys(llm_token_counts(model, train)),
                                     hparams["batch_size"],
                                     hparams.get("bucket_pool_batches", 16), seed)
        return {"batch_sampler": sampler, "num_workers": workers}
    kwargs = {"batch_size": hparams["batch_size"], "shuffle": sorting == "random",
              "num_workers": workers}
    if hparams.get("sampling_weights"):
        kwargs.pop("shuffle")
        kwargs["sampler"] = weighted_sampler(train, hparams["sampling_weights"], seed)
    return kwargs


def llm_training_dtype(hparams, run_opts):
    """The dtype the frozen LLM weights train in (the recipe's ``train_llm_dtype``; None:
    as built) and why, for the log; exits with a one-line error for a bad value."""
    # the device SpeechBrain's Brain will take (with no --device: a GPU where there is one)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    on_gpu = str(device).startswith("cuda")
    setting = hparams.get("train_llm_dtype")
    llm = getattr(hparams["model"], "llm", None)
    built = next((p.dtype for p in llm.parameters() if not p.requires_grad), None) \
        if llm is not None else None
    if setting == "auto" and run_opts.get("precision") == "fp16":
        return None, "train_llm_dtype auto: fp16 autocast (--precision=fp16) keeps them"
    try:
        dtype = training_llm_dtype(setting, on_gpu, built=built)
    except ValueError as error:
        sys.exit(f"error: {error}")
    why = f"train_llm_dtype {'null' if setting is None else setting}"
    if setting == "auto":
        reason = native_bf16_reason(on_gpu)
        why += ": " + (f"built in {dtype_name(built)}" if reason and built != torch.float32
                       else reason or f"no native bf16 on this {'GPU' if on_gpu else 'CPU'}")
    return dtype, why


def dtype_name(dtype):
    """``torch.bfloat16`` -> ``bfloat16``."""
    return str(dtype).replace("torch.", "")


def cast_frozen_llm(model, dtype, why):
    """Cast the frozen LLM weights of ``model`` to ``dtype`` (None: leave them) and log
    the LLM's training dtype. Checkpoints hold only trained weights, so decoding rebuilds
    the LLM as the model spec says."""
    llm = getattr(model, "llm", None)
    frozen = [p for p in llm.parameters() if not p.requires_grad] if llm is not None else []
    if not frozen:
        return
    cast = cast_frozen_parameters(llm, dtype) if dtype is not None else 0
    logger.info("frozen LLM weights in %s while training (%s; %d tensors cast)",
                dtype_name(frozen[0].dtype), why, cast)


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    argv = list(argv)
    feature_root = pop_option(argv, "feature_cache")
    hparams_file, run_opts, overrides, hparams = load_recipe_hparams(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if hparams.get("global_batch_size") and \
            "grad_accumulation_factor" in run_opts.overridden_args:
        sys.exit("error: give either global_batch_size (the accumulation follows from it) "
                 "or --grad_accumulation_factor, not both")
    hparams["batch_size"], hparams["grad_accumulation_factor"] = batch_plan(hparams,
                                                                            world_size)
    llm_dtype, llm_dtype_why = llm_training_dtype(hparams, run_opts)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"],
                                   hyperparams_to_save=hparams_file, overrides=overrides)
    cast_frozen_llm(hparams["model"], llm_dtype, llm_dtype_why)
    trim = getattr(hparams["model"], "max_audio_seconds", None)  # the model cuts clips
    tasks = hparams.get("tasks")  # optional: a recipe's own task names
    try:
        cache = open_cache(feature_root, hparams["model"])
    except FeatureCacheError as error:
        sys.exit(f"error: {error}")
    train = dataset(hparams["train_manifest"], hparams.get("max_duration"), trim, tasks, cache)
    valid = dataset(hparams["valid_manifest"], hparams.get("max_duration"), trim, tasks, cache)
    sorting = hparams.get("sorting", "random")
    if sorting not in ("random", "ascending", "descending"):
        sys.exit(f"error: sorting must be random, ascending or descending, not {sorting!r}")
    if sorting != "random":  # by duration; SpeechBrain's DDP sampler then keeps the order
        train = train.filtered_sorted(sort_key="duration", reverse=sorting == "descending")
    loader_kwargs = train_loader_kwargs(hparams, train, hparams["model"])
    if "batch_sampler" in loader_kwargs:  # DDP: SpeechBrain shares the batches out
        batches_per_epoch = math.ceil(len(loader_kwargs["batch_sampler"]) / world_size)
    else:
        batches_per_epoch = math.ceil(len(train) / (hparams["batch_size"] * world_size))
    # SpeechBrain steps the optimizer every grad_accumulation_factor batches (a trailing
    # partial accumulation is not stepped)
    steps = hparams["number_of_epochs"] * max(
        1, batches_per_epoch // hparams["grad_accumulation_factor"])
    if "lr_scheduler" in hparams:
        factory = hparams["lr_scheduler"]
        hparams["lr_scheduler"] = lambda optimizer: factory(optimizer,
                                                            num_training_steps=steps)
    if hparams.get("init_from"):
        initialise_from(hparams["model"], hparams["init_from"], hparams["checkpointer"])
    try:
        run_ctc_warmup(hparams["model"], hparams, train, valid, run_opts,
                       hparams["checkpointer"])
    except (NonFiniteLossError, FeatureCacheError) as error:
        sys.exit(f"error: CTC warm-up: {error}")
    brain = MoWEBrain(modules={"model": hparams["model"]}, opt_class=hparams["opt_class"],
                      hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    if hparams.get("max_batch_seconds"):
        logger.info("training on %d clips (%d validation) in %d batches of <= %s s of padded "
                    "audio, %d optimizer steps; %d process(es) x %d accumulation",
                    len(train), len(valid), len(loader_kwargs["batch_sampler"]),
                    hparams["max_batch_seconds"], steps, world_size,
                    brain.grad_accumulation_factor)
    else:
        logger.info("training on %d clips (%d validation), %d optimizer steps; %d process(es) "
                    "x batch %d x %d accumulation = global batch %d%s", len(train),
                    len(valid), steps, world_size, hparams["batch_size"],
                    brain.grad_accumulation_factor,
                    world_size * hparams["batch_size"] * brain.grad_accumulation_factor,
                    " (length-aware buckets)" if "batch_sampler" in loader_kwargs else "")
    try:
        brain.fit(hparams["epoch_counter"], train, valid,
                  train_loader_kwargs=loader_kwargs,
                  valid_loader_kwargs={"batch_size": hparams["batch_size"],
                                       "num_workers": hparams.get("num_workers", 0)})
    except (NonFiniteLossError, FeatureCacheError) as error:
        sys.exit(f"error: {error}")
    finally:
        report_skips(brain)
        if cache is not None:
            report_feature_cache(brain.audio_llm)
    return 0


def report_feature_cache(model):
    """Say how many clips came from the feature cache and how many were encoded live."""
    hits, misses = model.feature_cache_hits, model.feature_cache_misses
    log = logger.warning if misses else logger.info
    log("feature cache: %d clip encodings read from the cache, %d encoded live (cache "
        "misses%s)", hits, misses, ": rerun the features step" if misses else "")


def report_skips(brain):
    """Say what training left out: unreadable clips and skipped optimizer steps."""
    skipped = brain.unreadable_clips.skipped
    if skipped:
        shown = "; ".join(f"{utt}: {reason}" for utt, reason in list(skipped.items())[:3])
        logger.warning("skipped %d clips whose audio could not be used (%s); run "
                       "recipes/validate_data.py to clean the manifest", len(skipped), shown)
    if brain.skipped_steps:
        logger.warning("skipped %d optimizer steps with non-finite loss or gradients",
                       brain.skipped_steps)


def close_process_group():
    """Tear the DDP process group down before the interpreter exits, as PyTorch asks.

    Left to the exit-time destructors, a rank that finished training could abort on its
    way out ("terminate called without an active exception", exit code -6 under torchrun)
    when the machine was loaded, failing a run whose checkpoints were all written.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    finally:
        close_process_group()
    sys.exit(status)
