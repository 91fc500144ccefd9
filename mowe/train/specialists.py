"""Specialist weak encoders: small encoders pretrained on one task of their own corpus.

The paper's diverse pool (Sec. V-B) holds encoders pretrained for something else than
the audio LLM's tasks: HuBERT-base, and HuBERT-base-ER fine-tuned on an emotion corpus,
with the data-independent router's prior set to the emotion encoder. This module builds
the offline analog the way a user would build their own specialist:

1. a single-task corpus that is *not* the multitask corpus: ``emotion`` speaks
   WordNet example sentences (not the templated sentences of ``mowe.synth``) with
   accent + variant voices (not its seven voices) in the four prosody presets;
   ``scenes`` draws sound scenes from its own seed and labels the kinds of event in
   each (multi-label);
2. a :class:`mowe.models.encoders.SmallEncoder` + time pooling + a linear classifier trained
   on it, scored on a held-out part of the same corpus;
3. the encoder alone saved as ``OUT/<name>/encoder.safetensors`` + ``config.json``
   (plain data), which :func:`mowe.models.encoders.load_small_encoder` puts in a pool.

``python -m mowe specialists --out DIR`` runs all three for both specialists; the
``mowe_specialist_pool`` system of ``egs/synthetic`` (run.sh) runs it in stage 0 and
pools the two specialists with two Whisper tiny.en encoders
(``recipes/conf/model/specialist_pool.yaml``).
"""

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.models.encoders import SMALL_ENCODER_CONFIG, SmallEncoder, frame_mask

logger = logging.getLogger(__name__)

SPECIALISTS = ("emotion", "scenes")


# ------------------------------------------------------------------ corpora
def emotion_clip(index, seed):
    """One emotion clip: ``(audio, label index)``; labels cycle so classes balance."""
    from mowe.synth import freeform, speech

    labels = list(speech.EMOTIONS)
    label = index % len(labels)
    rng = np.random.default_rng([seed, 1, index])
    sentence = freeform.default_pool().sentence_in_split(rng, "train")
    voice = speech.variant_voice(rng, "train")
    preset = speech.EMOTIONS[labels[label]]
    audio = speech.speak(sentence, voice=voice["voice"],
                         speed=preset["speed"] + int(rng.integers(-12, 13)),
                         pitch=int(np.clip(preset["pitch"] + rng.integers(-8, 9), 0, 99)),
                         amplitude=preset["amplitude"] + int(rng.integers(-10, 11)),
                         gap=preset["gap"])
    return audio.astype(np.float32), label


def scene_clip(index, seed):
    """One sound scene: ``(audio, multi-hot of the event kinds in it)``."""
    from mowe.synth import scenes

    rng = np.random.default_rng([seed, 2, index])
    audio, events, _ = scenes.make_scene(rng)
    target = np.zeros(len(scenes.EVENT_KINDS), dtype=np.float32)
    for event in events:
        target[scenes.EVENT_KINDS.index(event["kind"])] = 1.0
    return audio.astype(np.float32), target


def label_names(name):
    """Class names of specialist ``name``."""
    if name == "emotion":
        from mowe.synth import speech

        return list(speech.EMOTIONS)
    from mowe.synth import scenes

    return list(scenes.EVENT_KINDS)


def make_corpus(name, clips, seed):
    """``clips`` items of specialist corpus ``name`` (``emotion`` or ``scenes``)."""
    make = {"emotion": emotion_clip, "scenes": scene_clip}[name]
    return [make(index, seed) for index in range(clips)]


# ------------------------------------------------------------------ model
class SpecialistClassifier(nn.Module):
    """A SmallEncoder, mean pooling over its valid frames, and a linear classifier."""

    def __init__(self, encoder, num_labels):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, num_labels)

    def forward(self, wav, wav_lens):
        feats, lens = self.encoder(wav, wav_lens)
        mask = frame_mask(lens, feats.shape[1]).unsqueeze(-1).to(feats.dtype)
        pooled = (feats * mask).sum(1) / mask.sum(1).clamp_min(1)
        return self.head(pooled)


def _batch(items):
    longest = max(len(audio) for audio, _ in items)
    wav = torch.zeros(len(items), longest)
    for row, (audio, _) in enumerate(items):
        wav[row, :len(audio)] = torch.from_numpy(audio)
    lens = torch.tensor([len(audio) / longest for audio, _ in items])
    targets = np.stack([np.asarray(target) for _, target in items])
    return wav, lens, torch.from_numpy(targets)


def _loss_and_hits(logits, targets, multilabel):
    if multilabel:
        loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        hits = ((logits > 0).float() == targets).all(dim=1).float()
    else:
        loss = F.cross_entropy(logits, targets.long())
        hits = (logits.argmax(dim=1) == targets.long()).float()
    return loss, hits


def evaluate(model, items, multilabel, batch_size=16):
    """Accuracy (exact match for multi-label) of ``model`` on ``items``."""
    model.eval()
    hits = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            wav, lens, targets = _batch(items[start:start + batch_size])
            hits.append(_loss_and_hits(model(wav, lens), targets, multilabel)[1])
    return float(torch.cat(hits).mean()) if hits else float("nan")


def train_specialist(name, train_items, test_items, epochs=8, lr=1e-3, batch_size=16,
                     seed=0, encoder_config=None):
    """Train a SmallEncoder classifier on ``train_items``; return ``(encoder, report)``.

    Arguments
    ---------
    name : str
        ``emotion`` (single label) or ``scenes`` (multi-label).
    train_items, test_items : list of (audio, target)
    epochs, lr, batch_size, seed : training settings (AdamW, cosine schedule).
    encoder_config : dict, optional
        SmallEncoder settings (default :data:`mowe.models.encoders.SMALL_ENCODER_CONFIG`).

    Returns
    -------
    encoder : SmallEncoder
    report : dict
        Settings, per-epoch training loss, and test accuracy before and after.
    """
    torch.manual_seed(seed)
    config = dict(SMALL_ENCODER_CONFIG, **(encoder_config or {}))
    multilabel = name == "scenes"
    model = SpecialistClassifier(SmallEncoder(**config), len(label_names(name)))
    before = evaluate(model, test_items, multilabel, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * max(1, -(-len(train_items) // batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.1)
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_items))
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            wav, lens, targets = _batch([train_items[i] for i in order[start:start + batch_size]])
            loss, _ = _loss_and_hits(model(wav, lens), targets, multilabel)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + loss.item() * len(wav), count + len(wav)
        losses.append(total / max(count, 1))
        logger.info("%s specialist: epoch %d/%d, train loss %.4f", name, epoch + 1, epochs,
                    losses[-1])
    after = evaluate(model, test_items, multilabel, batch_size)
    report = {"specialist": name, "labels": label_names(name), "multilabel": multilabel,
              "train_clips": len(train_items), "test_clips": len(test_items),
              "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
              "train_loss": losses, "test_accuracy_at_init": before,
              "test_accuracy": after, "encoder": config}
    return model.encoder, report


def save_encoder(encoder, config, folder, report=None):
    """Write ``encoder.safetensors`` and ``config.json`` (and ``report.json``) in
    ``folder``, each written beside and renamed into place."""
    from safetensors.torch import save_file

    from mowe.utils.atomic import write_text_atomic

    os.makedirs(folder, exist_ok=True)
    state = {key: value.detach().contiguous().clone() for key, value
             in encoder.state_dict().items()}
    partial = os.path.join(folder, "encoder.safetensors.partial")
    save_file(state, partial)
    os.replace(partial, os.path.join(folder, "encoder.safetensors"))
    write_text_atomic(os.path.join(folder, "config.json"),
                      json.dumps({"kind": "small", **config}, indent=2) + "\n")
    if report is not None:
        write_text_atomic(os.path.join(folder, "report.json"),
                          json.dumps(report, indent=2) + "\n")


def pretrain(out, names=SPECIALISTS, clips=600, test_share=0.2, epochs=6, lr=1e-3,
             seed=4321, encoder_config=None):
    """Make each specialist's corpus, train it and save it under ``out/<name>``.

    A specialist whose folder already holds ``encoder.safetensors`` is kept (delete the
    folder to retrain). Returns the reports by name.
    """
    reports = {}
    for name in names:
        folder = os.path.join(out, name)
        if os.path.exists(os.path.join(folder, "encoder.safetensors")):
            logger.info("%s specialist: %s exists, kept", name, folder)
            with open(os.path.join(folder, "report.json"), encoding="utf-8") as handle:
                reports[name] = json.load(handle)
            continue
        start = time.time()
        items = make_corpus(name, clips, seed)
        split = int(round(len(items) * (1 - test_share)))
        encoder, report = train_specialist(name, items[:split], items[split:], epochs, lr,
                                           seed=seed, encoder_config=encoder_config)
        report["wall_seconds"] = round(time.time() - start, 1)
        save_encoder(encoder, report["encoder"], folder, report)
        logger.info("%s specialist: test accuracy %.3f (at init %.3f) on %d held-out clips, "
                    "%.0f s -> %s", name, report["test_accuracy"],
                    report["test_accuracy_at_init"], report["test_clips"],
                    report["wall_seconds"], folder)
        reports[name] = report
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mowe specialists",
        description="Pretrain small specialist weak encoders (emotion, sound scenes) on "
                    "corpora of their own, for a pool like the paper's Sec. V-B.")
    parser.add_argument("--out", required=True, help="folder of the specialists")
    parser.add_argument("--specialists", nargs="+", default=list(SPECIALISTS),
                        choices=list(SPECIALISTS))
    parser.add_argument("--clips", type=int, default=600,
                        help="clips per specialist corpus (a fifth held out)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=4321,
                        help="corpus and training seed (the corpora differ from mowe.synth's "
                             "by construction, whatever the seed)")
    args = parser.parse_args(argv)
    if args.clips < 10:
        parser.error("--clips must be at least 10")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pretrain(args.out, args.specialists, args.clips, epochs=args.epochs, lr=args.lr,
             seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
