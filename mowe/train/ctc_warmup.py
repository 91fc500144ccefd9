"""CTC warm-up of the audio front end against the LLM's own token embeddings.

Before multitask training, the front end (weak encoders and routers, adapter, projection;
the base encoder too when it is trained) learns with a CTC loss on the transcription
clips to put, at each audio token, a vector that the frozen LLM input-embedding table
scores as the token spoken there:

    logits[t] = [ h_t . b,  h_t . E_1, ..., h_t . E_V ]    (blank first, then the vocabulary)

where ``h_t`` is the projected audio token, ``E`` the LLM's input embeddings (frozen, not
copied) and ``b`` a learned blank vector. The LLM then starts multitask training with
audio tokens that already look like (noisy, blank-separated) embeddings of the words said,
which it can copy instead of having to discover the acoustics through the next-token loss.
Without it, on the free-form corpus of ``--size large`` the LLM ignored the audio and
answered fluent, unrelated sentences (egs/synthetic/RESULTS.md).

Why by hand: SpeechBrain's CTC recipes put a trained linear layer over their own
output vocabulary; here the output layer must be the LLM's embedding table (so the
adapter learns the LLM's input space), so the head is a few lines around
``torch.nn.functional.ctc_loss`` (the loss itself is torch's).

The warm-up is a :class:`CTCWarmupBrain` (the :class:`mowe.train.brain.MoWEBrain` with another
forward and objective: NaN guard, resume and preemption are the parent's), run by
``recipes/train.py`` when ``ctc_warmup_epochs`` > 0, with its own checkpoints under
``<save_folder>/ctc_warmup``: an interrupted warm-up resumes, a finished one is loaded
instead of rerun, and a run that already has multitask checkpoints skips it.

Example
-------
>>> import torch
>>> head = EmbeddingTiedCTCHead(hidden_size=4)
>>> table = torch.randn(10, 4)
>>> head(torch.randn(2, 6, 4), table).shape  # blank + 10 tokens
torch.Size([2, 6, 11])
>>> collapse_ctc([0, 3, 3, 0, 3, 5, 5, 0])  # classes: 0 = blank, v + 1 = token v
[2, 2, 4]
>>> ctc_min_frames([7, 7, 8])  # a repeated token needs a blank between its copies
4
"""

import logging

import speechbrain as sb
import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.train.brain import MoWEBrain

logger = logging.getLogger(__name__)

BLANK = 0


class EmbeddingTiedCTCHead(nn.Module):
    """CTC output layer tied to an embedding table: blank vector + ``E``.

    Arguments
    ---------
    hidden_size : int
        Width of the audio tokens (the LLM's hidden size).
    """

    def __init__(self, hidden_size):
        super().__init__()
        self.blank = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, audio_tokens, embedding_table):
        """``[B, N, H]`` audio tokens -> ``[B, N, 1 + V]`` float32 logits (blank first).

        ``embedding_table`` (``[V, H]``) is passed at each call, not stored, so that the
        head's checkpoint holds only its blank vector and gradients never reach ``E``.
        """
        table = embedding_table.detach().to(audio_tokens.dtype)
        vocabulary = audio_tokens @ table.T
        blank = (audio_tokens @ self.blank.to(audio_tokens.dtype)).unsqueeze(-1)
        return torch.cat([blank, vocabulary], dim=-1).float()


def ctc_min_frames(target):
    """Frames CTC needs to emit ``target``: its length plus one blank per adjacent repeat."""
    return len(target) + sum(a == b for a, b in zip(target, target[1:]))


def collapse_ctc(classes):
    """Greedy CTC output: merge repeats, drop blanks; class ``v + 1`` -> token ``v``."""
    tokens, previous = [], None
    for value in classes:
        if value != previous and value != BLANK:
            tokens.append(int(value) - 1)
        previous = value
    return tokens


def ctc_loss(logits, token_lens, targets):
    """Mean CTC loss (per target token, as torch's ``reduction="mean"``) over the clips
    whose target fits in their audio tokens.

    Arguments
    ---------
    logits : torch.Tensor
        ``[B, N, 1 + V]`` from :class:`EmbeddingTiedCTCHead`.
    token_lens : torch.Tensor
        ``[B]`` valid audio tokens.
    targets : list of list of int
        LLM token ids per clip.

    Returns
    -------
    loss : torch.Tensor
        Scalar (NaN when no clip fits: the Brain skips such a batch and counts it).
    unfit : int
        Clips left out: target empty or longer than their audio tokens allow.
    """
    fits = [bool(t) and ctc_min_frames(t) <= int(n) for t, n in zip(targets, token_lens)]
    keep = [i for i, ok in enumerate(fits) if ok]
    if not keep:
        return logits.sum() * float("nan"), len(targets)
    index = torch.tensor(keep, device=logits.device)
    log_probs = logits[index].log_softmax(-1).transpose(0, 1)  # [N, B, C]
    labels = torch.tensor([v + 1 for i in keep for v in targets[i]], device=logits.device)
    label_lens = torch.tensor([len(targets[i]) for i in keep], device=logits.device)
    loss = F.ctc_loss(log_probs, labels, token_lens[index].to(logits.device), label_lens,
                      blank=BLANK, reduction="mean")
    return loss, len(targets) - len(keep)


def transcription_subset(data, tasks):
    """The clips of ``data`` (a SpeechBrain dataset) whose task is in ``tasks``."""
    tasks = set(tasks)
    return data.filtered_sorted(key_test={"task": lambda task: task in tasks})


class AudioFrontEnd(nn.Module):
    """The AudioLLM's audio side as a module of its own (``forward`` = its
    :meth:`~mowe.models.audio_llm.AudioLLM.encode_audio`), so that under DDP the warm-up's forward
    goes through the DDP wrapper and its gradients are averaged over the processes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wavs, wav_lens, base_feats=None):
        return self.model.encode_audio(wavs, wav_lens, base_feats)


class CTCWarmupBrain(MoWEBrain):
    """Trains the AudioLLM's front end with :func:`ctc_loss` (plus ``λ L_MoWE`` when the
    model has a mixture); ``modules`` = ``{"model": AudioFrontEnd, "ctc_head":
    EmbeddingTiedCTCHead}``. The LLM does not run (only its embedding table is read), so
    its LoRA weights get no gradient and the optimizer leaves them as they are.

    Validation reports the CTC loss and ``ctc_wer``: the corpus WER (AudioBench's
    normalisation) of the greedy CTC transcripts, i.e. what the audio tokens alone say.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unfit_clips = 0
        self._hyps, self._refs = [], []

    def compute_forward(self, batch, stage):
        """Audio tokens of the batch and their CTC logits."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        audio, token_lens, mowe = self.modules.model(
            wavs, wav_lens, getattr(batch, "base_feats", None))
        logits = self.modules.ctc_head(audio, self.audio_llm.llm.embed_tokens.weight)
        return logits, token_lens, mowe

    def compute_objectives(self, outputs, batch, stage):
        """CTC loss on the answers' LLM tokens (+ λ L_MoWE); greedy transcripts in
        validation."""
        logits, token_lens, mowe = outputs
        tokenizer = self.audio_llm.tokenizer
        targets = [tokenizer(answer, add_special_tokens=False).input_ids
                   for answer in batch.answer]
        loss, unfit = ctc_loss(logits, token_lens, targets)
        if stage == sb.Stage.TRAIN:
            self.unfit_clips += unfit
        parts = {"ctc": loss.detach()}
        if mowe is not None:
            weight = getattr(self.hparams, "mowe_loss_weight", 0.1)
            loss = loss + weight * mowe.loss
            parts["mowe"] = mowe.loss.detach()
            self.routing_stats[stage].update(batch.task, mowe.selected)
        self._batch_parts = parts
        if stage != sb.Stage.TRAIN:
            for row, length in zip(logits.argmax(-1).tolist(), token_lens.tolist()):
                self._hyps.append(tokenizer.decode(collapse_ctc(row[:length]),
                                                   skip_special_tokens=True))
            self._refs.extend(batch.answer)
        return loss

    @property
    def audio_llm(self):
        """The AudioLLM inside the front end (unwrapped from DDP when needed)."""
        front_end = self.modules.model
        return getattr(front_end, "module", front_end).model

    def on_stage_start(self, stage, epoch=None):
        """The parent's, and fresh greedy transcripts."""
        super().on_stage_start(stage, epoch)
        self._hyps, self._refs = [], []

    def stage_stats(self, stage, stage_loss):
        """The parent's statistics plus ``ctc_wer`` (validation)."""
        stats = super().stage_stats(stage, stage_loss)
        if stage != sb.Stage.TRAIN and self._refs:
            from mowe.scoring.wer import corpus_wer

            stats["ctc_wer"] = round(100 * corpus_wer(self._hyps, self._refs).wer, 2)
        return stats


def run_ctc_warmup(model, hparams, train, valid, run_opts, main_checkpointer):
    """Warm the front end of ``model`` up with CTC, unless ``ctc_warmup_epochs`` is 0 or the
    main run already has a checkpoint; leaves the warmed-up weights in ``model``.

    Arguments
    ---------
    model : mowe.models.audio_llm.AudioLLM
    hparams : dict
        Reads ``ctc_warmup_epochs``, ``ctc_warmup_tasks`` (default ``[asr]``),
        ``ctc_warmup_lr`` (default: the optimizer's), ``ctc_warmup_batch_size`` (default
        ``batch_size``), ``opt_class``, ``save_folder``, ``output_folder``,
        ``mowe_loss_weight``, ``num_workers``.
    train, valid : speechbrain.dataio.dataset.DynamicItemDataset
        The training and validation sets (all tasks; the warm-up takes its tasks' clips).
    run_opts : dict
        SpeechBrain's run options (device, DDP).
    main_checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The multitask run's: when it holds a checkpoint, the warm-up is over.

    Returns
    -------
    CTCWarmupBrain or None
        The Brain that ran (None when skipped).
    """
    import functools
    import os

    from speechbrain.utils.epoch_loop import EpochCounter
    from speechbrain.utils.train_logger import FileTrainLogger

    from mowe.train.checkpoints import AtomicCheckpointer

    epochs = int(hparams.get("ctc_warmup_epochs") or 0)
    if epochs <= 0:
        return None
    if main_checkpointer is not None and main_checkpointer.find_checkpoint() is not None:
        logger.info("CTC warm-up skipped: the multitask run has checkpoints (resuming them)")
        return None
    tasks = hparams.get("ctc_warmup_tasks") or ["asr"]
    train, valid = transcription_subset(train, tasks), transcription_subset(valid, tasks)
    if len(train) == 0:
        raise SystemExit(f"error: ctc_warmup_epochs={epochs} but the training set has no "
                         f"clips of the tasks {list(tasks)} (ctc_warmup_tasks)")
    optimizer = hparams["opt_class"]
    if hparams.get("ctc_warmup_lr"):
        optimizer = functools.partial(optimizer, lr=float(hparams["ctc_warmup_lr"]))
    folder = os.path.join(hparams["save_folder"], "ctc_warmup")
    head = EmbeddingTiedCTCHead(model.llm.hidden_size)
    counter = EpochCounter(limit=epochs)
    checkpointer = AtomicCheckpointer(folder, recoverables={"model": model,
                                                            "ctc_head": head,
                                                            "counter": counter})
    warmup_hparams = {
        "epoch_counter": counter,
        "mowe_loss_weight": hparams.get("mowe_loss_weight", 0.1),
        "find_unused_parameters": True,  # DDP: the LLM's LoRA weights get no gradient
        "ckpt_interval_minutes": hparams.get("ckpt_interval_minutes", 0),
        "train_logger": FileTrainLogger(os.path.join(hparams["output_folder"],
                                                     "ctc_warmup_log.txt")),
    }
    brain = CTCWarmupBrain(modules={"model": AudioFrontEnd(model), "ctc_head": head},
                           opt_class=optimizer,
                           hparams=warmup_hparams, run_opts=run_opts,
                           checkpointer=checkpointer)
    batch_size = int(hparams.get("ctc_warmup_batch_size") or hparams["batch_size"])
    workers = hparams.get("num_workers", 0)
    logger.info("CTC warm-up of the audio front end: %d epoch(s) over %d %s clips (%d "
                "validation), batch %d; checkpoints in %s", epochs, len(train),
                "/".join(tasks), len(valid), batch_size, folder)
    if len(valid) == 0:
        raise SystemExit(f"error: the validation set has no clips of the tasks {list(tasks)}"
                         " (ctc_warmup_tasks): the CTC warm-up checkpoints after validation")
    try:
        brain.fit(counter, train, valid,
                  train_loader_kwargs={"batch_size": batch_size, "shuffle": True,
                                       "num_workers": workers},
                  valid_loader_kwargs={"batch_size": batch_size, "num_workers": workers})
    finally:  # also when batches of only such clips (NaN loss) stopped the warm-up
        if brain.unfit_clips:
            logger.warning("CTC warm-up: %d training clip passes left out of the loss: "
                           "their transcript needs more frames than their audio tokens "
                           "(raise num_audio_tokens) or is empty", brain.unfit_clips)
    return brain
