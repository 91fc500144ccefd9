"""MoWEBrain: SpeechBrain's Brain for the AudioLLM.

Overrides only what the method needs: the forward, the objective
``L = L_next-token + λ L_MoWE [+ μ L_balance]`` (λ = ``mowe_loss_weight`` in the hparams,
default 0.1; μ = ``moe_balance_weight``, default 0.01, for the MoE adapter's
load-balancing loss),
and thin wrappers around the parent's ``fit_batch`` / ``evaluate_batch`` that record
the loss parts and how often each weak encoder is selected per task. Gradient
accumulation, mixed precision, gradient clipping, non-finite-loss patience and DDP
all stay SpeechBrain's.

Hparams the Brain reads (all optional): ``mowe_loss_weight``, ``lr_scheduler`` (a
factory ``optimizer -> torch scheduler``, stepped at every optimizer step),
``train_logger`` (a SpeechBrain logger), ``routing_stats_file``, ``expert_usage_file``
(per-task token counts of the MoE adapter's experts on the validation set),
``loss_trace_file``
(JSON lines: optimizer step, epoch, batch loss averaged over processes), ``dashboard``
(a :class:`mowe.train.dashboards.RunDashboard`: TensorBoard / W&B curves of the step loss,
learning rate, loss parts, validation metrics and per-task routing shares).

Non-finite values never reach the weights (:meth:`MoWEBrain.optimizers_step`): an
optimizer step whose accumulated batches gave a NaN/inf loss, or whose gradients are not
all finite, is skipped (gradients dropped, learning rate not advanced) with a warning and
a count; more than ``--nonfinite_patience`` (SpeechBrain's option, default 3) skipped
steps in a row stop training with :class:`NonFiniteLossError`. Running averages count
finite batch losses only, a validation without one finite batch loss saves no checkpoint,
and no checkpoint is written from non-finite parameters. Batches whose clips could not be
loaded at all (see :mod:`mowe.data.collate`) are skipped and counted.

Resume and preemption (:mod:`mowe.train.resume`): checkpoints also hold the random generator
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

from mowe.data.collate import SkipUnreadableClips
from mowe.train.checkpoints import not_an_epoch_checkpoint
from mowe.train.param_groups import (ParamGroupError, add_group_warmups, build_param_groups,
                               log_param_groups)
from mowe.train.resume import (EXIT_PREEMPTED, CheckpointFormatError, PreemptionFlag, RandomStates,
                         TrainingStatistics, truncate_loss_trace)
from mowe.train.stats import ExpertUsage, LossPartsTracker, RoutingStatistics
from mowe.train.threads import ThreadShare

logger = logging.getLogger(__name__)

# Returned for a batch without a usable clip: not a loss, left out of every average.
NO_LOSS = torch.tensor(float("nan"))


class NonFiniteLossError(RuntimeError):
    """Training cannot go on: the loss or gradients stayed non-finite, or no validation
    batch gave a finite loss. Checkpoints saved before stay on disk."""


class MoWEBrain(sb.Brain):
    """Train and evaluate a :class:`mowe.models.audio_llm.AudioLLM` held in ``modules["model"]``."""

    def __init__(self, *args, **kwargs):
        self.lr_scheduler = None
        super().__init__(*args, **kwargs)
        self.routing_stats = {stage: RoutingStatistics() for stage in sb.Stage}
        self.expert_usage = {stage: ExpertUsage() for stage in sb.Stage}
        self.loss_parts = {stage: LossPartsTracker() for stage in sb.Stage}
        self._batch_parts = {}
        self._step_losses = []
        self.resumed_train_stats = None
        self.preemption = PreemptionFlag()
        self.unreadable_clips = SkipUnreadableClips()
        self._grad_norms = []  # pre-clipping gradient norm of each optimizer step this epoch
        self.skipped_steps = 0  # optimizer steps skipped for non-finite values, in total
        self._skipped_in_a_row = 0
        self._window_nonfinite = False  # a non-finite loss since the last optimizer step
        self._last_step_skipped = False
        self._finite_batches = 0  # per stage: batches whose loss entered the average
        self._nonfinite_batches = 0
        self._empty_batches = 0
        self.random_states = None
        self.thread_share = ThreadShare()  # more CPU threads once other systems' jobs end
        if self.checkpointer is not None:
            self.random_states = RandomStates()
            self.checkpointer.add_recoverable("random_states", self.random_states)
            self.checkpointer.add_recoverable("training_statistics", TrainingStatistics(self))

    def fit(self, *args, **kwargs):
        """The parent's fit, with SIGTERM/SIGUSR1 turned into checkpoint-and-exit, and a
        checkpoint file refused by :func:`mowe.train.resume.safe_load` into one error line."""
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

    def _train_loader_specifics(self, dataset, loader_kwargs):
        """The parent's, plus: a ``batch_sampler`` (length-aware batching) becomes the
        train sampler in a single process too, so that its ``set_epoch`` is called every
        epoch (SpeechBrain does it only for the DDP wrapper): each epoch has its own
        batches, and a resumed epoch replays them."""
        loader_kwargs = super()._train_loader_specifics(dataset, loader_kwargs)
        batch_sampler = loader_kwargs.get("batch_sampler")
        if self.train_sampler is None and hasattr(batch_sampler, "set_epoch"):
            self.train_sampler = batch_sampler
        return loader_kwargs

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """The parent's loader, batching with :class:`SkipUnreadableClips` unless the
        caller gives its own ``collate_fn``."""
        loader_kwargs.setdefault("collate_fn", self.unreadable_clips)
        return super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)

    def _agree_any(self, flag):
        """``flag`` OR-ed over the DDP processes (itself when not distributed)."""
        if not sb.utils.distributed.is_distributed_initialized():
            return bool(flag)
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def _agree_sum(self, count):
        """``count`` summed over the DDP processes."""
        if not sb.utils.distributed.is_distributed_initialized():
            return count
        value = torch.tensor([float(count)], device=self.device)
        torch.distributed.all_reduce(value)
        return int(value.item())

    # ------------------------------------------------------------ optimisation
    def check_loss_isfinite(self, loss):
        """Mark the accumulation window of a non-finite loss: its optimizer step is
        skipped in :meth:`optimizers_step` (the parent would step on NaN gradients)."""
        if not torch.isfinite(loss):
            self._window_nonfinite = True
            logger.warning("non-finite training loss (%s) at batch %d of epoch %s",
                           float(loss.detach()), self.step, getattr(self, "current_epoch", None))

    def _gradients_finite(self):
        grads = [p.grad for p in self.modules.parameters() if p.grad is not None]
        if not grads:
            return True
        return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

    def optimizers_step(self):
        """The parent's step (with the gradient norm clipped over every parameter group:
        :meth:`_step_clipping_every_group`), unless this window's loss or any gradient is non-finite
        (agreed over DDP processes): then the gradients are dropped and the step is
        skipped and counted; more than ``nonfinite_patience`` in a row stop training."""
        skip = self._agree_any(self._window_nonfinite or not self._gradients_finite())
        self._window_nonfinite = False
        self._last_step_skipped = skip
        if not skip:
            self._step_clipping_every_group()
            self._skipped_in_a_row = 0
            return
        self.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self._skipped_in_a_row += 1
        if sb.utils.distributed.if_main_process():
            logger.warning("skipped optimizer step %d: non-finite loss or gradients (%d in "
                           "a row, %d skipped in this run)", self.optimizer_step + 1,
                           self._skipped_in_a_row, self.skipped_steps)
        if self._skipped_in_a_row > self.nonfinite_patience:
            raise NonFiniteLossError(
                f"{self._skipped_in_a_row} optimizer steps in a row had a non-finite loss "
                f"or gradients (patience --nonfinite_patience={self.nonfinite_patience}); "
                "stopping. Check the data (recipes/validate_data.py rejects non-finite "
                "audio) and lower the learning rate; the last good checkpoint is kept.")

    def _step_clipping_every_group(self):
        """SpeechBrain's optimizer step, with the gradient norm clipped over every group.

        Written out because SpeechBrain (1.1) clips ``opt.param_groups[0]`` only: with
        ``param_groups`` the first group is the pretrained encoders', so the LoRA,
        adapter, projection and routers of every system with a trainable pretrained
        encoder (``baseline_ft``, the pretrained and specialist pools) were never
        clipped, while a single-group system (``baseline``, ``mowe``) clipped them all.
        Here one norm is taken over all of an optimizer's parameters, as a single group
        has it, so every system is clipped the same way.
        """
        if self.optimizers_dict is not None:
            optimizers = self.freeze_optimizers(self.optimizers_dict)
        elif self.opt_class is not None:
            optimizers = {"optimizer": self.optimizer}
        else:
            return
        for optimizer in optimizers.values():
            self.scaler.unscale_(optimizer)
        for optimizer in optimizers.values():
            norm = torch.nn.utils.clip_grad_norm_(
                [p for group in optimizer.param_groups for p in group["params"]],
                self.max_grad_norm)
            self._grad_norms.append(float(norm))  # before clipping; logged per epoch
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        for optimizer in optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def update_average(self, loss, avg_loss):
        """Running mean over the batches with a finite loss only (the parent's divides
        by every batch, so skipped batches would pull the mean towards zero)."""
        if loss is NO_LOSS:
            self._empty_batches += 1
            return avg_loss
        if not torch.isfinite(loss):
            self._nonfinite_batches += 1
            return avg_loss
        self._finite_batches += 1
        return avg_loss + (float(loss) - avg_loss) / self._finite_batches

    def _check_parameters_finite(self):
        """Refuse to checkpoint non-finite weights (a checkpoint is what decoding uses)."""
        for name, parameter in self.modules.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                raise NonFiniteLossError(f"parameter {name} holds NaN or inf values; no "
                                         "checkpoint saved, earlier ones are kept")

    def _save_intra_epoch_ckpt(self):
        self._check_parameters_finite()
        super()._save_intra_epoch_ckpt()

    def init_optimizers(self):
        """Parent's optimizer creation, plus an optional per-step LR scheduler.

        With ``param_groups`` in the hparams (:mod:`mowe.train.param_groups`) the optimizer gets
        one parameter group per listed set of modules, each at its own rate (and
        warm-up), logged here; without it, the parent's single group."""
        spec = getattr(self.hparams, "param_groups", None)
        warmups = []
        if spec and self.opt_class is not None:
            groups, table = build_param_groups(self.audio_llm, spec)
            warmups = [group.pop("warmup_steps") for group in groups]
            self.optimizer = self.opt_class(groups)
            self.optimizers_dict = {"opt_class": self.optimizer}
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("optimizer", self.optimizer)
            if sb.utils.distributed.if_main_process():
                log_param_groups(table, self.optimizer.defaults.get("lr"))
        else:
            super().init_optimizers()
        factory = getattr(self.hparams, "lr_scheduler", None)
        if factory is not None and getattr(self, "optimizer", None) is not None:
            self.lr_scheduler = add_group_warmups(factory(self.optimizer), warmups)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)
        elif any(warmups):
            raise ParamGroupError("param_groups set warmup_steps but the recipe has no "
                                  "lr_scheduler to apply them to")

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Advance the LR schedule after each optimizer step; trace the step's loss (the
        mean over its accumulated batches and over the processes). A skipped step
        (non-finite values) advances neither and is not traced."""
        stepped = should_step and not self._last_step_skipped
        self._last_step_skipped = False
        if stepped and self.lr_scheduler is not None:
            self.lr_scheduler.step()
        trace = getattr(self.hparams, "loss_trace_file", None)
        dashboard = getattr(self.hparams, "dashboard", None)
        if not trace and dashboard is None:
            return
        self._step_losses.append(loss.detach().float())
        if not should_step:
            return
        losses, self._step_losses = self._step_losses, []
        if not stepped:
            return
        value = torch.stack(losses).mean()
        if sb.utils.distributed.is_distributed_initialized():
            torch.distributed.all_reduce(value)
            value /= torch.distributed.get_world_size()
        if dashboard is not None:
            scalars = {"loss": float(value)}
            if self.lr_scheduler is not None:
                scalars["lr"] = self.lr_scheduler.get_last_lr()[0]
            dashboard.log_step(self.optimizer_step, scalars)
        if trace and sb.utils.distributed.if_main_process():
            with open(trace, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"optimizer_step": self.optimizer_step,
                                         "epoch": getattr(self, "current_epoch", None),
                                         "loss": float(value)}) + "\n")

    # ----------------------------------------------------------- forward / loss
    def compute_forward(self, batch, stage):
        """Run the AudioLLM on a batch with ``sig``, ``instruction`` and ``answer`` (and
        ``base_feats``, precomputed base-encoder features, when the dataset has them)."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        base_feats = getattr(batch, "base_feats", None)
        if base_feats is None:  # keeps the call of models that take no base_feats
            return self.modules.model(wavs, wav_lens, batch.instruction, batch.answer)
        return self.modules.model(wavs, wav_lens, batch.instruction, batch.answer,
                                  base_feats=base_feats)

    def compute_objectives(self, outputs, batch, stage):
        """L = L_next-token + λ L_MoWE; records the parts and the routing choices."""
        weight = getattr(self.hparams, "mowe_loss_weight", 0.1)
        loss = outputs.next_token_loss + weight * outputs.mowe_loss
        parts = {"next_token": outputs.next_token_loss.detach(),
                 "mowe": outputs.mowe_loss.detach()}
        parts.update({f"mowe_{k}": v for k, v in outputs.mowe_loss_parts.items()})
        if outputs.adapter_loss is not None:  # the MoE adapter's load balancing
            balance = getattr(self.hparams, "moe_balance_weight", 0.01)
            loss = loss + balance * outputs.adapter_loss
            parts["moe_balance"] = outputs.adapter_loss.detach()
            self.expert_usage[stage].update(batch.task, outputs.expert_counts)
        self._batch_parts = parts
        if outputs.selected is not None:
            self.routing_stats[stage].update(batch.task, outputs.selected)
        return loss

    def fit_batch(self, batch):
        """The parent's training step; then the loss parts of this batch are logged.
        A batch without a usable clip (``None``) is skipped."""
        if batch is None:
            return NO_LOSS
        if self.random_states is not None:
            self.random_states.apply_pending(at_epoch_start=False)
        self.thread_share.update()
        loss = super().fit_batch(batch)
        self.loss_parts[sb.Stage.TRAIN].update(self._batch_parts)
        # Exit only after an optimizer step: the loader's saved position already counts
        # this batch, and gradients accumulated for a later step would be lost.
        if self.step % self.grad_accumulation_factor == 0:
            self._exit_if_preempted()
        return loss

    def evaluate_batch(self, batch, stage):
        """The parent's evaluation step, recording loss parts as in training."""
        if batch is None:
            return NO_LOSS
        self.thread_share.update()
        loss = super().evaluate_batch(batch, stage)
        self.loss_parts[stage].update(self._batch_parts)
        return loss

    # ---------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Fresh loss-part and routing trackers for the stage (or, for a training
        epoch resumed mid-way, the trackers saved in its checkpoint)."""
        self.current_epoch = epoch
        if stage == sb.Stage.TRAIN:
            self._grad_norms = []  # a resumed epoch logs the norms of its steps after resuming
        # a training epoch resumed mid-way continues its running mean over self.step batches
        self._finite_batches = self.step if stage == sb.Stage.TRAIN else 0
        self._nonfinite_batches = self._empty_batches = 0
        if stage == sb.Stage.TRAIN and self.random_states is not None:
            self.random_states.apply_pending(at_epoch_start=True)
        if stage == sb.Stage.TRAIN and self.resumed_train_stats is not None:
            self.loss_parts[stage], self.routing_stats[stage] = self.resumed_train_stats
            self.resumed_train_stats = None
            return
        self.routing_stats[stage] = RoutingStatistics()
        self.loss_parts[stage] = LossPartsTracker()
        self.expert_usage[stage] = ExpertUsage()

    def stage_stats(self, stage, stage_loss):
        """Loss, loss parts and routing proportions of a finished stage."""
        stats = {"loss": float(stage_loss)}
        stats.update(self.loss_parts[stage].averages())
        if stage == sb.Stage.TRAIN and self._grad_norms:
            # gradient norm before clipping, mean over the epoch's optimizer steps, and the
            # share of steps max_grad_norm clipped
            stats["grad_norm"] = sum(self._grad_norms) / len(self._grad_norms)
            stats["clipped"] = (sum(norm > self.max_grad_norm for norm in self._grad_norms)
                                / len(self._grad_norms))
        if self._nonfinite_batches:
            stats["nonfinite_batches"] = self._nonfinite_batches
        return stats

    def _check_validation_loss(self, epoch):
        """A validation loss is a checkpoint's score: it must come from finite batch
        losses (all processes agree before anyone raises)."""
        finite, nonfinite = (self._agree_sum(self._finite_batches),
                             self._agree_sum(self._nonfinite_batches))
        empty = self._agree_sum(self._empty_batches)
        if empty and sb.utils.distributed.if_main_process():
            logger.warning("epoch %s: %d validation batches had no readable clip", epoch,
                           empty)
        if finite == 0:
            raise NonFiniteLossError(
                f"epoch {epoch}: no validation batch gave a finite loss ({nonfinite} "
                f"non-finite, {empty} without a readable clip); no checkpoint saved for it")
        if nonfinite and sb.utils.distributed.if_main_process():
            logger.warning("epoch %s: %d of %d validation batches had a non-finite loss; "
                           "the validation loss averages the other %d", epoch, nonfinite,
                           finite + nonfinite, finite)

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
        usage_file = getattr(self.hparams, "expert_usage_file", None)
        if usage_file and self.expert_usage[stage].counts \
                and sb.utils.distributed.if_main_process():
            with open(usage_file + ".partial", "w", encoding="utf-8") as handle:
                json.dump(self.expert_usage[stage].to_dict(), handle, indent=2)
            os.replace(usage_file + ".partial", usage_file)
        train_logger = getattr(self.hparams, "train_logger", None)
        meta = {"epoch": epoch}
        if self.lr_scheduler is not None:
            meta["lr"] = self.lr_scheduler.get_last_lr()[0]
        if stage == sb.Stage.VALID:
            self._check_validation_loss(epoch)
            dashboard = getattr(self.hparams, "dashboard", None)
            if dashboard is not None:
                dashboard.log_epoch(epoch, meta, getattr(self, "train_stats", None), stats,
                                    {name: self.routing_stats[s].to_dict() for name, s in
                                     (("train", sb.Stage.TRAIN), ("valid", stage))
                                     if self.routing_stats[s].counts})
            if train_logger is not None:
                train_logger.log_stats(stats_meta=meta, train_stats=getattr(self, "train_stats", None),
                                       valid_stats=stats)
            else:
                logger.info("epoch %s: train %s valid %s", epoch,
                            getattr(self, "train_stats", None), stats)
            if self.checkpointer is not None:
                self._check_parameters_finite()
                keep_epochs = getattr(self.hparams, "keep_epoch_checkpoints", False)
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stats["loss"], "epoch": epoch}, min_keys=["loss"],
                    ckpt_predicate=not_an_epoch_checkpoint if keep_epochs else None)
            # a signal during validation: the epoch's checkpoint is now on disk
            self._exit_if_preempted(save=False)
        elif train_logger is not None:
            train_logger.log_stats(stats_meta={"epoch loaded": self.hparams.epoch_counter.current}
                                   if hasattr(self.hparams, "epoch_counter") else {},
                                   test_stats=stats)
        else:
            logger.info("test: %s", stats)
