"""MoWEBrain: SpeechBrain's Brain for the AudioLLM.

Overrides only what the method needs: the forward, the objective
``L = L_next-token + λ L_MoWE`` (λ = ``mowe_loss_weight`` in the hparams, default 0.1),
and thin wrappers around the parent's ``fit_batch`` / ``evaluate_batch`` that record
the loss parts and how often each weak encoder is selected per task. Gradient
accumulation, mixed precision, gradient clipping, non-finite-loss patience and DDP
all stay SpeechBrain's.

Hparams the Brain reads (all optional): ``mowe_loss_weight``, ``lr_scheduler`` (a
factory ``optimizer -> torch scheduler``, stepped at every optimizer step),
``train_logger`` (a SpeechBrain logger), ``routing_stats_file``.
"""

import json
import logging
import os

import speechbrain as sb
import torch

from mowe.stats import LossPartsTracker, RoutingStatistics

logger = logging.getLogger(__name__)


class MoWEBrain(sb.Brain):
    """Train and evaluate a :class:`mowe.model.AudioLLM` held in ``modules["model"]``."""

    def __init__(self, *args, **kwargs):
        self.lr_scheduler = None
        super().__init__(*args, **kwargs)
        self.routing_stats = {stage: RoutingStatistics() for stage in sb.Stage}
        self.loss_parts = {stage: LossPartsTracker() for stage in sb.Stage}
        self._batch_parts = {}

    @property
    def audio_llm(self):
        """The AudioLLM, unwrapped from DDP when needed."""
        model = self.modules.model
        return getattr(model, "module", model)

    # ------------------------------------------------------------ optimisation
    def init_optimizers(self):
        """Parent's optimizer creation, plus an optional per-step LR scheduler."""
        super().init_optimizers()
        factory = getattr(self.hparams, "lr_scheduler", None)
        if factory is not None and getattr(self, "optimizer", None) is not None:
            self.lr_scheduler = factory(self.optimizer)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Advance the LR schedule after each optimizer step."""
        if should_step and self.lr_scheduler is not None:
            self.lr_scheduler.step()

    # ----------------------------------------------------------- forward / loss
    def compute_forward(self, batch, stage):
        """Run the AudioLLM on a batch with ``sig``, ``instruction`` and ``answer``."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.modules.model(wavs, wav_lens, batch.instruction, batch.answer)

    def compute_objectives(self, outputs, batch, stage):
        """L = L_next-token + λ L_MoWE; records the parts and the routing choices."""
        weight = getattr(self.hparams, "mowe_loss_weight", 0.1)
        loss = outputs.next_token_loss + weight * outputs.mowe_loss
        parts = {"next_token": outputs.next_token_loss.detach(),
                 "mowe": outputs.mowe_loss.detach()}
        parts.update({f"mowe_{k}": v for k, v in outputs.mowe_loss_parts.items()})
        self._batch_parts = parts
        if outputs.selected is not None:
            self.routing_stats[stage].update(batch.task, outputs.selected)
        return loss

    def fit_batch(self, batch):
        """The parent's training step; then the loss parts of this batch are logged."""
        loss = super().fit_batch(batch)
        self.loss_parts[sb.Stage.TRAIN].update(self._batch_parts)
        return loss

    def evaluate_batch(self, batch, stage):
        """The parent's evaluation step, recording loss parts as in training."""
        loss = super().evaluate_batch(batch, stage)
        self.loss_parts[stage].update(self._batch_parts)
        return loss

    # ---------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Fresh loss-part and routing trackers for the stage."""
        self.routing_stats[stage] = RoutingStatistics()
        self.loss_parts[stage] = LossPartsTracker()

    def stage_stats(self, stage, stage_loss):
        """Loss, loss parts and routing proportions of a finished stage."""
        stats = {"loss": float(stage_loss)}
        stats.update(self.loss_parts[stage].averages())
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the stage, save routing statistics, checkpoint after validation."""
        stats = self.stage_stats(stage, stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats_file = getattr(self.hparams, "routing_stats_file", None)
        if stats_file and self.routing_stats[stage].counts:
            folder = os.path.dirname(stats_file)
            if folder:
                os.makedirs(folder, exist_ok=True)
            with open(stats_file, "w", encoding="utf-8") as handle:
                json.dump(self.routing_stats[stage].to_dict(), handle, indent=2)
        train_logger = getattr(self.hparams, "train_logger", None)
        meta = {"epoch": epoch}
        if self.lr_scheduler is not None:
            meta["lr"] = self.lr_scheduler.get_last_lr()[0]
        if stage == sb.Stage.VALID:
            if train_logger is not None:
                train_logger.log_stats(stats_meta=meta, train_stats=getattr(self, "train_stats", None),
                                       valid_stats=stats)
            else:
                logger.info("epoch %s: train %s valid %s", epoch,
                            getattr(self, "train_stats", None), stats)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(meta={"loss": stats["loss"]},
                                                     min_keys=["loss"])
        elif train_logger is not None:
            train_logger.log_stats(stats_meta={"epoch loaded": self.hparams.epoch_counter.current}
                                   if hasattr(self.hparams, "epoch_counter") else {},
                                   test_stats=stats)
        else:
            logger.info("test: %s", stats)
