"""What the benchmarks share: timing, tiny models as the recipes build them, synthetic
batches, one training step and the GEMM peak it is measured against.

``run_all.py``, ``paper_size_step.py`` and ``concurrent_systems.py`` import from here (and
``run_all.py`` from the other two), so the benchmarks import each other in one direction
only. ``bench/`` is not a package: each script puts its own folder on ``sys.path``.
"""

import os
import statistics
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


ROOT = os.path.dirname(HERE)


CORPUS_LIKE = {
    "asr": (300, (2.3, 4.5), "Transcribe the speech in this clip.", (6, 12)),
    "er": (100, (1.8, 7.4), "What emotion does the speaker express? Choose one of "
           "neutral, joy, disgust, sadness, surprise, anger, fear.", (1, 1)),
    "aqa": (100, (0.7, 3.8), "How many tones do you hear?", (1, 2)),
    "sqa": (100, (6.1, 9.5), "What is the name of the city?", (1, 3)),
    "ac": (100, (0.7, 4.1), "Write a caption for this audio.", (3, 14)),
}


WORDS = "the a low hum and then clicking burst of noise finally rising tone high".split()


def quantiles(values):
    """(median, q1, q3) of ``values``."""
    values = sorted(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q1, q3


def timed(fn, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def model_dirs(args, workdir):
    """(whisper dir, llm dir, real): the bundled models, or random same-size ones."""
    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    whisper = os.path.join(args.pretrained_dir, "whisper-tiny.en")
    llm = os.path.join(args.pretrained_dir, "smollm2-135m-instruct")
    if not args.quick and not args.random_models and os.path.isdir(whisper) \
            and os.path.isdir(llm):
        return whisper, llm, True
    if args.quick:
        return (make_tiny_whisper(os.path.join(workdir, "whisper")),
                make_tiny_llama(os.path.join(workdir, "llama")), False)
    return (make_tiny_whisper(os.path.join(workdir, "whisper"), d_model=384, layers=4,
                              heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                              vocab_size=51864),
            make_tiny_llama(os.path.join(workdir, "llama"), hidden_size=576, num_layers=30,
                            num_heads=9, num_key_value_heads=3, intermediate_size=1536),
            False)


def recipe_model(whisper, llm, workdir, quick):
    """The default recipe's model (egs/synthetic/conf/train.yaml's spec), MoWE M=4."""
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"base_encoder_source": whisper, "llm_source": llm,
                 "pretrained_cache": os.path.join(workdir, "cache"), "num_audio_tokens": 25,
                 "frames_per_token": 24, "num_weak_encoders": 4,
                 "freeze_base_encoder": True, "lora_rank": 16,
                 "lora_targets": ["q_proj", "v_proj"],
                 "system_prompt": "You answer questions about audio."}
    if quick:
        overrides.update(weak_encoder_dim=16, weak_encoder_layers=1, weak_encoder_heads=2,
                         adapter_dim=32, num_audio_tokens=4, frames_per_token=4)
    path = os.path.join(ROOT, "recipes", "conf", "model", "audio_llm.yaml")
    with open(path, encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, overrides)["model"]


def llm_as_recipes_train(*models):
    """Put ``models``' frozen LLM weights in the dtype the recipes train them in
    (``train_llm_dtype: auto``, :mod:`mowe.train.precision`); returns that dtype (float32
    where this CPU has no native bf16)."""
    from mowe.train.precision import cast_frozen_parameters, training_llm_dtype

    dtype = training_llm_dtype("auto") or torch.float32
    for model in models:
        cast_frozen_parameters(model.llm, dtype)
    return dtype


def frozen_weights(module):
    """``module``'s frozen parameters as they are now (tensors by name)."""
    return {name: parameter.data for name, parameter in module.named_parameters()
            if not parameter.requires_grad}


def restore_frozen(module, weights):
    """Put back ``weights`` (:func:`frozen_weights`): exactly the spec's weights, not a
    float32 copy of their bf16 rounding."""
    for name, parameter in module.named_parameters():
        if name in weights:
            parameter.data = weights[name]


def corpus_like(count, seed=0, manifest=None):
    """Clips like the default synthetic corpus: (seconds, instruction, answer, task);
    from ``manifest`` when given."""
    import json

    import numpy as np

    rng = np.random.default_rng(seed)
    if manifest:
        with open(manifest, encoding="utf-8") as handle:
            entries = list(json.load(handle).values())
        clips = [(min(float(e["duration"]), 30.0), e["instruction"], e["answer"],
                  e.get("task") or e["instruction"]) for e in entries]
        return [clips[i] for i in rng.permutation(len(clips))][:count]
    total = sum(v[0] for v in CORPUS_LIKE.values())
    clips = []
    for task, (share, (low, high), instruction, (wmin, wmax)) in CORPUS_LIKE.items():
        for _ in range(max(1, round(count * share / total))):
            words = rng.choice(WORDS, size=int(rng.integers(wmin, wmax + 1)))
            clips.append((float(rng.uniform(low, high)), instruction, " ".join(words), task))
    order = rng.permutation(len(clips))
    return [clips[i] for i in order][:count]


def audio_batch(clips, device, seed=0):
    """Noise audio for ``clips``: (wav [B, S], relative lengths, instructions, answers)."""
    generator = torch.Generator().manual_seed(seed)
    samples = [int(c[0] * 16000) for c in clips]
    wav = torch.zeros(len(clips), max(samples))
    for row, n in enumerate(samples):
        wav[row, :n] = torch.randn(n, generator=generator) * 0.1
    lens = torch.tensor([n / max(samples) for n in samples])
    return (wav.to(device), lens.to(device), [c[1] for c in clips], [c[2] for c in clips])


def train_step(model, optimizer, batch):
    out = model(*batch)
    loss = out.next_token_loss + 0.1 * out.mowe_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return out


def optimizer_for(model, fused=True):
    """AdamW as the recipes build it (``fused: True``); ``fused=False``: torch's
    per-tensor loop (its CPU default)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                             fused=fused)


def with_plain_lora_dropout(model):
    """``model`` with peft's own ``nn.Dropout`` back in its LoRA layers (undoes
    mowe.models.dropout.use_quarter_draw_dropout): the step before this round's CPU changes."""
    from mowe.models.dropout import QuarterDrawDropout, lora_dropout_slots

    for container, key, dropout in lora_dropout_slots(model):
        if isinstance(dropout, QuarterDrawDropout):
            container[key] = torch.nn.Dropout(dropout.p)
    return model


def step_flops(model, optimizer, batch):
    """FLOPs of one training step's forward and backward (matmuls, convolutions,
    attention: what FlopCounterMode counts; the optimizer's elementwise work is not)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, batch)
    return counter.get_total_flops()


def gemm_flops_per_s(size, device, dtype=torch.float32):
    """FLOP/s of a ``size x size`` matrix product in ``dtype`` (best of three)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), device)[0] for _ in range(3))
    return 2 * size ** 3 / best
