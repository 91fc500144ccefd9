"""Linear probes: what does each encoder's output know, and does it survive the adapter?

For each clip, each probed representation is pooled over time (mean over valid frames or
tokens) and a linear classifier per label is fitted on the training clips and scored on
the test clips. Representations of an :class:`mowe.models.audio_llm.AudioLLM`:

* ``base``: the base encoder's output;
* ``weak<k>``: weak encoder ``k``'s output, run on every clip whatever the routers say
  (aligned to the base frames and the pool's width, as the mixture mixes it);
* ``mixture``: z_MoWE as the routers mix it (evaluation mode);
* ``adapter_input``: z = z_base ⊕ z_MoWE, what the adapter reads;
* ``audio_tokens``: the projected audio tokens the LLM reads.

Labels the synthetic corpus knows (:func:`clip_labels`): ``emotion`` (ER clips), and, for
sound scenes (AC and AQA clips), ``events``: which of the five kinds of event occur (one
binary probe per kind, scored by their mean accuracy). ``voice`` where the manifest
records it. Each score is reported beside chance (the majority class of the test clips).

The classifier is multinomial logistic regression on standardised features with an L2
penalty, fitted by L-BFGS in torch: a few lines here rather than a dependency on
scikit-learn, which the toolkit does not otherwise need.

Example
-------
>>> import torch
>>> generator = torch.Generator().manual_seed(0)
>>> labels = torch.arange(200) % 2
>>> signal = torch.randn(200, 8, generator=generator)
>>> signal[:, 0] += 3.0 * labels
>>> round(linear_probe(signal[:150], labels[:150], signal[150:], labels[150:]), 2)
0.92
"""

import logging
import math

import torch

logger = logging.getLogger(__name__)

EVENT_KINDS = ("tone", "sweep", "noise", "clicks", "hum")
_EVENT_NAMES = {"high beep": "tone", "low beep": "tone", "rising sweep": "sweep",
                "falling sweep": "sweep", "burst of noise": "noise", "clicking": "clicks",
                "low hum": "hum"}


def linear_probe(train_x, train_y, test_x, test_y, l2=1e-3, steps=200):
    """Test accuracy of a logistic-regression probe fitted on ``(train_x, train_y)``.

    Arguments
    ---------
    train_x, test_x : torch.Tensor
        ``[N, D]`` pooled features.
    train_y, test_y : torch.Tensor
        ``[N]`` integer labels.
    l2 : float
        Weight of the L2 penalty (on standardised features).
    steps : int
        L-BFGS iterations.

    Returns
    -------
    float
    """
    train_x, test_x = train_x.double(), test_x.double()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train_x @ weight + bias, train_y.long()) \
            + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (test_x @ weight + bias).argmax(dim=1)
    return float((predicted == test_y.long()).double().mean())


def chance(test_y):
    """Accuracy of always answering the most frequent test label."""
    return float(torch.bincount(test_y.long()).max()) / max(len(test_y), 1)


def clip_labels(entry):
    """``{label name: value}`` the corpus records for one manifest entry.

    ``emotion``: the answer of an ER clip; ``events``: a tuple of 0/1 per
    :data:`EVENT_KINDS` for a clip with a ``scene`` signature; ``voice``: the entry's
    ``voice`` field where present.
    """
    labels = {}
    if entry.get("task") == "er":
        labels["emotion"] = str(entry["answer"]).strip().lower()
    scene = entry.get("scene")
    if isinstance(scene, str) and scene:
        kinds = {_EVENT_NAMES.get(name) for name in scene.split("|")[:-1]}
        labels["events"] = tuple(int(kind in kinds) for kind in EVENT_KINDS)
    if isinstance(entry.get("voice"), str):
        labels["voice"] = entry["voice"]
    return labels


def _pool(feats, lens):
    frames = torch.arange(feats.shape[1]).unsqueeze(0) < lens.unsqueeze(1)
    mask = frames.unsqueeze(-1).to(feats.dtype)
    return (feats * mask).sum(1) / mask.sum(1).clamp_min(1)


@torch.no_grad()
def representations(model, wav, wav_lens):
    """``{name: [B, D] pooled features}`` of one batch (see the module notes)."""
    from mowe.models.encoders import trim_batch

    model.eval()
    wav, wav_lens = trim_batch(wav, wav_lens, model.max_audio_seconds)
    z_base, base_lens = model.base_encoder(wav, wav_lens)
    pooled = {"base": _pool(z_base, base_lens)}
    feats = z_base
    mixture = model.mixture
    if mixture is not None:
        frames = z_base.shape[1]
        for index in range(mixture.num_encoders):
            aligned = mixture._encode(index, wav, wav_lens, base_lens, frames)
            pooled[f"weak{index}"] = _pool(aligned, base_lens)
        mowe = mixture(wav, wav_lens, z_base, base_lens)
        pooled["mixture"] = _pool(mowe.features, base_lens)
        feats = torch.cat([z_base, mowe.features.to(z_base.dtype)], dim=-1)
        pooled["adapter_input"] = _pool(feats, base_lens)
    adapter_lens = base_lens
    if getattr(model.base_encoder, "fixed_length", False):
        adapter_lens = torch.full_like(base_lens, feats.shape[1])
    tokens, token_lens = model.adapter(feats, adapter_lens)
    tokens = model.projection(tokens)
    pooled["audio_tokens"] = _pool(tokens, token_lens)
    return pooled


def encode_clips(model, entries, batch_size=8):
    """Pooled representations and labels of manifest ``entries`` (``{id: entry}``) that
    carry a label; clips that cannot be read are skipped and counted (logged)."""
    from mowe.data.audio import AudioError, load_audio

    rows, labels, skipped = {}, [], 0
    batch, batch_labels = [], []

    def flush():
        if not batch:
            return
        longest = max(len(audio) for audio in batch)
        wav = torch.zeros(len(batch), longest)
        for row, audio in enumerate(batch):
            wav[row, :len(audio)] = audio
        lens = torch.tensor([len(audio) / longest for audio in batch])
        for name, value in representations(model, wav, lens).items():
            rows.setdefault(name, []).append(value.float())
        labels.extend(batch_labels)
        batch.clear()
        batch_labels.clear()

    for utt, entry in entries.items():
        found = clip_labels(entry)
        if not found:
            continue
        try:
            audio = load_audio(entry["wav"], start=entry.get("start"), stop=entry.get("stop"))
        except AudioError as error:
            skipped += 1
            logger.warning("probe: skipped %s: %s", utt, error)
            continue
        batch.append(audio)
        batch_labels.append(found)
        if len(batch) == batch_size:
            flush()
    flush()
    if skipped:
        logger.warning("probe: %d clips could not be read and were skipped", skipped)
    return {name: torch.cat(values) for name, values in rows.items()}, labels


def _targets(labels, name, rows):
    """Per probe of label ``name``: ``(row indices, integer targets)``; ``events`` gives
    one binary probe per event kind."""
    present = [i for i in rows if name in labels[i]]
    if name == "events":
        return [(present, torch.tensor([labels[i]["events"][k] for i in present]))
                for k in range(len(EVENT_KINDS))]
    values = sorted({labels[i][name] for i in present})
    index = {value: n for n, value in enumerate(values)}
    return [(present, torch.tensor([index[labels[i][name]] for i in present]))]


def probe_model(model, train_entries, test_entries, batch_size=8):
    """Probe every representation of ``model`` for every label both splits carry.

    Returns
    -------
    dict
        ``{label: {"chance": c, "train_clips": n, "test_clips": m,
        "accuracy": {representation: a}}}``.
    """
    train_x, train_labels = encode_clips(model, train_entries, batch_size)
    test_x, test_labels = encode_clips(model, test_entries, batch_size)
    names = sorted({n for found in train_labels for n in found}
                   & {n for found in test_labels for n in found})
    results = {}
    for name in names:
        train_probes = _targets(train_labels, name, range(len(train_labels)))
        test_probes = _targets(test_labels, name, range(len(test_labels)))
        if name not in ("events",):  # one label set: the test labels index the same list
            train_values = sorted({train_labels[i][name] for i in train_probes[0][0]})
            keep = [i for i in test_probes[0][0] if test_labels[i][name] in train_values]
            position = {value: n for n, value in enumerate(train_values)}
            test_probes = [(keep, torch.tensor([position[test_labels[i][name]] for i in keep]))]
        entry = {"train_clips": len(train_probes[0][0]), "test_clips": len(test_probes[0][0]),
                 "chance": sum(chance(y) for _, y in test_probes) / len(test_probes),
                 "accuracy": {}}
        for representation in train_x:
            scores = [linear_probe(train_x[representation][tr_rows], tr_y,
                                   test_x[representation][te_rows], te_y)
                      for (tr_rows, tr_y), (te_rows, te_y) in zip(train_probes, test_probes)]
            entry["accuracy"][representation] = sum(scores) / len(scores)
        results[name] = entry
    return results


def probe_table(results_by_model):
    """Markdown: one row per (label, representation), one column per model."""
    models = list(results_by_model)
    labels = sorted({label for results in results_by_model.values() for label in results})
    lines = ["| label | representation | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    for label in labels:
        first = next(r[label] for r in results_by_model.values() if label in r)
        lines.append(f"| {label} | chance (test majority) | "
                     + " | ".join(f"{100 * first['chance']:.1f}" for _ in models) + " |")
        representations_ = list(first["accuracy"])
        for representation in representations_:
            cells = []
            for model in models:
                value = results_by_model[model].get(label, {}).get("accuracy", {}).get(
                    representation, math.nan)
                cells.append("—" if math.isnan(value) else f"{100 * value:.1f}")
            lines.append(f"| {label} | {representation} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
