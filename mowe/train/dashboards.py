"""Training curves for TensorBoard (on by default) and, where installed, Weights & Biases.

:class:`RunDashboard` is the ``dashboard`` of a recipe YAML; :class:`mowe.train.brain.MoWEBrain`
calls it after each optimizer step (training loss, learning rate) and after each
validation (the epoch's loss parts, learning rate and per-task routing shares of training
and validation, through SpeechBrain's ``TensorboardLogger``). Look at a run with
``tensorboard --logdir exp/``. Without the ``tensorboard`` package (or ``wandb`` when a
W&B project is asked for) it logs one warning and does nothing: training goes on.

Example
-------
>>> shares = routing_shares({"asr": {"0": {"1": 3, "2": 1}}})
>>> shares["routing/asr/router0/encoder1"]
0.75
"""

import logging

logger = logging.getLogger(__name__)


def routing_shares(counts):
    """Flatten :meth:`mowe.train.stats.RoutingStatistics.to_dict` into scalar shares.

    >>> routing_shares({"er": {"0": {"0": 1, "3": 1}}, "ac": {"0": {}}})
    {'routing/er/router0/encoder0': 0.5, 'routing/er/router0/encoder3': 0.5}
    """
    shares = {}
    for task, routers in counts.items():
        for router, encoders in routers.items():
            total = sum(encoders.values())
            for encoder, count in encoders.items():
                if total:
                    shares[f"routing/{task}/router{router}/encoder{encoder}"] = count / total
    return shares


class RunDashboard:
    """Scalars of a training run for TensorBoard (and optionally W&B).

    Arguments
    ---------
    save_dir : str
        TensorBoard event files go here (``<output_folder>/tensorboard``).
    tensorboard : bool
        Write TensorBoard event files (SpeechBrain's ``TensorboardLogger``).
    wandb_project : str, optional
        Also log to this Weights & Biases project (``wandb`` must be installed and
        logged in; ``WANDB_MODE=offline`` works without a network).
    step_interval : int
        Log the training loss every this many optimizer steps.

    Writers are created at the first scalar, so loading a YAML (e.g. for decoding)
    writes nothing; only the main process writes.
    """

    def __init__(self, save_dir, tensorboard=True, wandb_project=None, step_interval=1):
        self.save_dir = save_dir
        self.tensorboard = bool(tensorboard)
        self.wandb_project = wandb_project
        self.step_interval = max(1, int(step_interval))
        self._tb = self._wandb = None
        self._started = False
        self._main = True

    def _start(self):
        if self._started:
            return
        self._started = True
        from speechbrain.utils.distributed import if_main_process

        # SpeechBrain's TensorboardLogger is made on every process: its log_stats is
        # main_process_only, which broadcasts its result, so under DDP every process must
        # call it (a call on the main process alone would pair its broadcast with the next
        # collective of the others, e.g. the checkpointer's). It writes on the main one.
        self._main = if_main_process()
        if self.tensorboard:
            try:
                from speechbrain.utils.train_logger import TensorboardLogger

                self._tb = TensorboardLogger(self.save_dir)
            except ImportError as error:
                logger.warning("TensorBoard logging is off: %s (pip install tensorboard)",
                               error)
        if self.wandb_project and self._main:
            try:
                import wandb

                self._wandb = wandb.init(project=self.wandb_project, dir=self.save_dir,
                                         resume="allow")
            except Exception as error:  # missing package, no login, no network
                logger.warning("W&B logging is off: %s", error)

    @property
    def active(self):
        """Whether any writer is available (after the first scalar)."""
        self._start()
        return self._tb is not None or self._wandb is not None

    def log_step(self, step, scalars):
        """Per optimizer step: ``scalars`` such as ``{"loss": 1.2, "lr": 1e-4}``."""
        if step % self.step_interval or not self.active:
            return
        for name, value in scalars.items():
            if self._tb is not None and self._main:
                self._tb.writer.add_scalar(f"step/{name}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"step/{k}": v for k, v in scalars.items()}, step=step)

    def log_epoch(self, epoch, meta, train_stats=None, valid_stats=None, routing=None):
        """After validation: the epoch's stats and ``routing`` (``{stage: counts}``)."""
        if not self.active:
            return
        if self._tb is not None:
            self._tb.log_stats(stats_meta=dict(meta), train_stats=train_stats,
                               valid_stats=valid_stats)  # every process: see _start
            if self._main:
                for stage, counts in (routing or {}).items():
                    for name, share in routing_shares(counts).items():
                        self._tb.writer.add_scalar(f"{name}/{stage}", share, epoch)
                self._tb.writer.flush()
        if self._wandb is not None:
            row = {f"epoch/{k}": v for k, v in meta.items()}
            for stage, stats in (("train", train_stats), ("valid", valid_stats)):
                row.update({f"{stage}/{k}": v for k, v in (stats or {}).items()})
            for stage, counts in (routing or {}).items():
                row.update({f"{n}/{stage}": v for n, v in routing_shares(counts).items()})
            self._wandb.log(row)
