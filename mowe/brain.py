"""MoWEBrain: SpeechBrain's Brain for the AudioLLM.

Overrides only what the method needs: the forward, the objective
``L = L_next-token + λ L_MoWE`` (λ = ``mowe_loss_weight`` in the hparams, default 0.1),
and thin wrappers around the parent's ``fit_batch`` / ``evaluate_batch`` that record
the loss parts and how often each weak encoder is selected per task. Gradient
accumulation, mixed precision, gradient clipping, non-finite-loss patience and DDP
all stay SpeechBrain's.

Hparams the Brain reads (all optional): ``mowe_loss_weight``, ``lr_scheduler`` (a
factory ``optimizer -> torch scheduler``, stepped at every optimizer step),
``train_logger`` (a SpeechBrain logger), ``routing_stats_file``, ``loss_trace_file``
(JSON lines: optimizer step, epoch, batch loss averaged over processes).

Resume and preemption (:mod:`mowe.resume`): checkpoints also hold the random generator
states and the epoch's running statistics; SIGTERM or SIGUSR1 makes the Brain save an
intra-epoch checkpoint at the next optimizer-step boundary (or, during validation, after
the epoch's checkpoint) and exit with code 75, and the next run continues from there.
Under DDP the processes agree on the signal at each step and checkpoint together.
"""

import json
import logging
import os

import speechbrain as sb
import torch

from mowe.resume import (EXIT_PREEMPTED, CheckpointFormatError, PreemptionFlag, RandomStates,
                         TrainingStatistics, truncate_loss_trace)
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
        self._step_losses = []
        self.resumed_train_stats = None
        self.preemption = PreemptionFlag()
        self.random_states = None
        if self.checkpointer is not None:
            self.random_states = RandomStates()
            self.checkpointer.add_recoverable("random_states", self.random_states)
            self.checkpointer.add_recoverable("training_statistics", TrainingStatistics(self))

    def fit(self, *args, **kwargs):
        """The parent's fit, with SIGTERM/SIGUSR1 turned into checkpoint-and-exit, and a
        checkpoint file refused by :func:`mowe.resume.safe_load` into one error line."""
        self.preemption.install()
        try:
            return super().fit(*args, **kwargs)
        except CheckpointFormatError as error:
            raise SystemExit(f"error: {error}") from error
        finally:
            self.preemption.uninstall()

    def on_fit_start(self):
        """The parent's start (which recovers the newest checkpoint); then the loss trace
        loses the steps after the checkpoint's, which this run redoes."""
        super().on_fit_start()
        trace = getattr(self.hparams, "loss_trace_file", None)
        if trace and sb.utils.distributed.if_main_process():
            truncate_loss_trace(trace, self.optimizer_step)

    def _preemption_requested(self):
        """Whether any process received SIGTERM/SIGUSR1 (agreed by all DDP processes,
        so that they checkpoint together at the same step)."""
        requested = self.preemption.requested is not None
        if sb.utils.distributed.is_distributed_initialized():
            flag = torch.tensor([float(requested)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested

    def _exit_if_preempted(self, save=True):
        """Checkpoint (all processes take part: SpeechBrain writes on the main one) and
        exit with :data:`EXIT_PREEMPTED` if a preemption signal arrived."""
        if not self._preemption_requested():
            return
        if save and self.checkpointer is not None:
            self._save_intra_epoch_ckpt()
        if sb.utils.distributed.if_main_process():
            logger.warning("%s: %s at optimizer step %d; exiting with %d (rerun to resume)",
                           self.preemption.requested or "preemption signal",
                           "saved a checkpoint" if save else "checkpoint of this epoch saved",
                           self.optimizer_step, EXIT_PREEMPTED)
        raise SystemExit(EXIT_PREEMPTED)

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
        """Advance the LR schedule after each optimizer step; trace the step's loss (the
        mean over its accumulated batches and over the processes)."""
        if should_step and self.lr_scheduler is not None:
            self.lr_scheduler.step()
        trace = getattr(self.hparams, "loss_trace_file", None)
        if not trace:
            return
        self._step_losses.append(loss.detach().float())
        if not should_step:
            return
        value = torch.stack(self._step_losses).mean()
        self._step_losses = []
        if sb.utils.distributed.is_distributed_initialized():
            torch.distributed.all_reduce(value)
            value /= torch.distributed.get_world_size()
        if sb.utils.distributed.if_main_process():
            with open(trace, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"optimizer_step": self.optimizer_step,
                                         "epoch": getattr(self, "current_epoch", None),
                                         "loss": float(value)}) + "\n")

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
        if self.random_states is not None:
            self.random_states.apply_pending(at_epoch_start=False)
        loss = super().fit_batch(batch)
        self.loss_parts[sb.Stage.TRAIN].update(self._batch_parts)
        # Exit only after an optimizer step: the loader's saved position already counts
        # this batch, and gradients accumulated for a later step would be lost.
        if self.step % self.grad_accumulation_factor == 0:
            self._exit_if_preempted()
        return loss

    def evaluate_batch(self, batch, stage):
        """The parent's evaluation step, recording loss parts as in training."""
        loss = super().evaluate_batch(batch, stage)
        self.loss_parts[stage].update(self._batch_parts)
        return loss

    # ---------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Fresh loss-part and routing trackers for the stage (or, for a training
        epoch resumed mid-way, the trackers saved in its checkpoint)."""
        self.current_epoch = epoch
        if stage == sb.Stage.TRAIN and self.random_states is not None:
            self.random_states.apply_pending(at_epoch_start=True)
        if stage == sb.Stage.TRAIN and self.resumed_train_stats is not None:
            self.loss_parts[stage], self.routing_stats[stage] = self.resumed_train_stats
            self.resumed_train_stats = None
            return
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
            if self.random_states is not None:
                # resumed from a checkpoint saved after the epoch's last batch: the
                # generator states belong here, before validation
                self.random_states.apply_pending(at_epoch_start=False)
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
            # a signal during validation: the epoch's checkpoint is now on disk
            self._exit_if_preempted(save=False)
        elif train_logger is not None:
            train_logger.log_stats(stats_meta={"epoch loaded": self.hparams.epoch_counter.current}
                                   if hasattr(self.hparams, "epoch_counter") else {},
                                   test_stats=stats)
        else:
            logger.info("test: %s", stats)
