"""End-to-end self-check: data -> YAML spec -> MoWEBrain training -> decoding -> scores.

Runs offline in about a minute on a laptop CPU, with tiny *random* Whisper and Llama
models (saved and reloaded through ``from_pretrained``) and a two-task corpus of
synthetic tones it writes itself:

* ``pitch`` — one tone, "Is the tone high or low?" -> ``high`` / ``low``;
* ``count`` — one to three beeps, "How many beeps are there?" -> ``one`` / ``two`` /
  ``three``.

It exists to show that every piece of the pipeline runs together, as a quick check of
the library (``make demo`` runs the synthetic 5-task recipe, ``egs/synthetic/run.sh``,
instead; tests/unit/test_model.py runs this one); it does not use the real pretrained
models. It writes ``OUT/results.json`` and ``OUT/routing_stats.json`` and
prints per-task accuracy next to the majority-answer baseline.

Usage: ``python -m mowe selfcheck --out exp/selfcheck [--epochs 8]``
"""

import argparse
import json
import logging
import os
import sys
from collections import Counter

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_YAML = os.path.join(REPO_ROOT, "recipes", "conf", "model", "audio_llm.yaml")
SAMPLE_RATE = 16000
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def tone(frequency, seconds, rng):
    """A sine tone with a short fade in/out and a random amplitude."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    return rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * frequency * t) * fade


def make_clip(task, rng):
    """One synthetic clip and its (instruction, answer)."""
    if task == "pitch":
        high = bool(rng.integers(2))
        frequency = rng.uniform(1200, 2000) if high else rng.uniform(200, 400)
        audio = np.concatenate([np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)),
                                tone(frequency, rng.uniform(0.4, 0.8), rng)])
        return audio, "Is the tone high or low?", "high" if high else "low"
    count = int(rng.integers(1, 4))
    pieces = []
    for _ in range(count):
        pieces += [np.zeros(int(rng.uniform(0.1, 0.2) * SAMPLE_RATE)),
                   tone(rng.uniform(600, 900), 0.12, rng)]
    pieces.append(np.zeros(int(0.1 * SAMPLE_RATE)))
    return np.concatenate(pieces), "How many beeps are there?", NUMBER_WORDS[count]


def write_split(folder, name, per_task, seed):
    """Write the clips of a split and its manifest; return the manifest path."""
    import soundfile

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    entries = {}
    for task in ("pitch", "count"):
        for index in range(per_task):
            audio, instruction, answer = make_clip(task, rng)
            utt = f"{name}_{task}_{index:03d}"
            path = os.path.join(folder, name, f"{utt}.wav")
            soundfile.write(path, audio.astype("float32"), SAMPLE_RATE)
            entries[utt] = {"wav": path, "duration": len(audio) / SAMPLE_RATE, "task": task,
                            "instruction": instruction, "answer": answer}
    manifest = os.path.join(folder, f"{name}.json")
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(entries, handle, indent=1)
    return manifest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="exp/selfcheck", help="output folder")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs")
    parser.add_argument("--train_per_task", type=int, default=48)
    parser.add_argument("--test_per_task", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    import speechbrain as sb
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from tqdm import tqdm

    from mowe.train.brain import MoWEBrain
    from mowe.data import make_dataset
    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    torch.manual_seed(args.seed)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log = logging.getLogger("mowe.utils.selfcheck")
    log.info("writing tiny random models and the synthetic tone corpus to %s", out)
    whisper = make_tiny_whisper(os.path.join(out, "models", "whisper"), d_model=64)
    llama = make_tiny_llama(os.path.join(out, "models", "llama"), initializer_range=0.3)
    data = os.path.join(out, "data")
    train_manifest = write_split(data, "train", args.train_per_task, args.seed)
    test_manifest = write_split(data, "test", args.test_per_task, args.seed + 1)

    overrides = {"base_encoder_source": whisper, "llm_source": llama,
                 "pretrained_cache": os.path.join(out, "models", "cache"),
                 "num_audio_tokens": 10, "frames_per_token": 4, "adapter_dim": 64,
                 "weak_encoder_dim": 32, "weak_encoder_layers": 1, "weak_encoder_heads": 2,
                 "lora_rank": 16,
                 "lora_targets": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]}
    with open(MODEL_YAML, encoding="utf-8") as handle:
        model = load_hyperpyyaml(handle, overrides)["model"]
    checkpointer = sb.utils.checkpoints.Checkpointer(os.path.join(out, "save"),
                                                     recoverables={"model": model})
    brain = MoWEBrain(
        modules={"model": model},
        opt_class=lambda params: torch.optim.AdamW(params, lr=3e-3),
        hparams={"mowe_loss_weight": 0.1,
                 "routing_stats_file": os.path.join(out, "routing_stats.json")},
        run_opts={"device": "cpu"},
        checkpointer=checkpointer,
    )
    tasks = ("pitch", "count")  # this check's own two tasks
    train = make_dataset(train_manifest, tasks=tasks)
    test = make_dataset(test_manifest, tasks=tasks)
    brain.fit(sb.utils.epoch_loop.EpochCounter(args.epochs), train, test,
              train_loader_kwargs={"batch_size": 8, "shuffle": True},
              valid_loader_kwargs={"batch_size": 8})
    log.info("last epoch: train %s", getattr(brain, "train_stats", "none (resumed from a finished run)"))

    model.eval()
    loader = sb.dataio.dataloader.make_dataloader(test, batch_size=8)
    correct, total, answers = Counter(), Counter(), {}
    for batch in tqdm(loader, desc="decoding"):
        wavs, wav_lens = batch.sig
        hyps = model.generate(wavs, wav_lens, batch.instruction, max_new_tokens=5)
        for task, hyp, ref in zip(batch.task, hyps, batch.answer):
            total[task] += 1
            correct[task] += int(hyp.strip().lower() == ref)
            answers.setdefault(task, []).append(ref)
    results = {}
    for task in sorted(total):
        majority = Counter(answers[task]).most_common(1)[0][1] / total[task]
        results[task] = {"accuracy": correct[task] / total[task], "majority_baseline": majority,
                         "count": total[task]}
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print("\nself-check results (tiny random models, synthetic tones):")
    for task, row in results.items():
        print(f"  {task:6s} accuracy {row['accuracy']:.2f}  "
              f"(majority answer {row['majority_baseline']:.2f}, n={row['count']})")
    print(f"results: {os.path.join(out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
