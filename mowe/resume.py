"""What a checkpoint needs beyond SpeechBrain's own recoverables, and preemption.

SpeechBrain's checkpointer already saves the model, optimizer, epoch counter, the
Brain's step counters and the training loader's position inside the epoch (intra-epoch
checkpoints every ``ckpt_interval_minutes`` or ``ckpt_interval_steps``). This module adds:

* :class:`RandomStates` — the torch (CPU and CUDA), numpy and ``random`` generator
  states of every process, so that dropout and routing noise after a resume continue exactly as in an
  uninterrupted run;
* :class:`TrainingStatistics` — the running loss parts and routing counts of the epoch
  in progress, so that a resumed epoch's logged statistics cover the whole epoch;
* :class:`PreemptionFlag` — SIGTERM / SIGUSR1 handlers that ask the training loop to
  checkpoint at the next batch boundary and exit with :data:`EXIT_PREEMPTED` (Slurm
  sends one of them before a time limit or a preemption; the job is then requeued).
"""

import functools
import logging
import os
import random
import signal

import numpy as np
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again" — the launcher requeues or reruns


def _rank_path(path):
    """Rank 0 (or a single process) uses ``path``; DDP rank r > 0 ``path.rank<r>``."""
    rank = int(os.environ.get("RANK", 0))
    return str(path) if rank == 0 else f"{path}.rank{rank}"


# Every DDP process saves its own generator states (not only the main process).
@functools.partial(register_checkpoint_hooks, save_on_main_only=False)
class RandomStates:
    """Checkpointable random generator states (torch CPU/CUDA, numpy, random).

    Loading does not apply the states at once: :meth:`apply_pending` does, at the point
    where the uninterrupted run stood when it saved — before the next training batch
    for an intra-epoch checkpoint, at the start of the next epoch's training for an
    end-of-epoch one — so that work done in between on resume (building loaders draws
    a seed from torch's generator) does not shift the random stream.
    """

    def __init__(self):
        self.pending = None

    @staticmethod
    def capture():
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                 "random": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def restore(state):
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["random"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @mark_as_saver
    def save(self, path):
        torch.save(self.capture(), _rank_path(path))

    @mark_as_loader
    def load(self, path, end_of_epoch):
        own = _rank_path(path)
        if not os.path.isfile(own):  # e.g. resumed with more processes than saved it
            logger.warning("no generator states for this process in %s; using rank 0's",
                           os.path.dirname(str(path)))
            own = str(path)
        self.pending = (torch.load(own, weights_only=False), bool(end_of_epoch))

    def apply_pending(self, at_epoch_start):
        """Restore loaded states if this is the point they belong to."""
        if self.pending is not None and self.pending[1] == at_epoch_start:
            self.restore(self.pending[0])
            self.pending = None


@register_checkpoint_hooks
class TrainingStatistics:
    """Checkpointable loss-part and routing trackers of the training epoch in progress.

    Arguments
    ---------
    brain : MoWEBrain
        Holds ``loss_parts`` and ``routing_stats`` per stage.
    """

    def __init__(self, brain):
        self.brain = brain

    @mark_as_saver
    def save(self, path):
        import speechbrain as sb

        parts = self.brain.loss_parts[sb.Stage.TRAIN]
        routing = self.brain.routing_stats[sb.Stage.TRAIN]
        torch.save({"sums": dict(parts.sums), "count": parts.count,
                    "routing": routing.to_dict()}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        from mowe.stats import LossPartsTracker, RoutingStatistics

        if end_of_epoch:
            return  # a finished epoch starts the next one with fresh trackers
        state = torch.load(path, weights_only=False)
        parts = LossPartsTracker()
        parts.sums.update(state["sums"])
        parts.count = state["count"]
        routing = RoutingStatistics()
        for task, routers in state["routing"].items():
            for router, encoders in routers.items():
                for encoder, count in encoders.items():
                    routing.counts[task][int(router)][int(encoder)] = count
        self.brain.resumed_train_stats = (parts, routing)


class PreemptionFlag:
    """Install SIGTERM/SIGUSR1 handlers that set a flag instead of killing the process.

    The training loop polls :attr:`requested` at batch boundaries; a second signal while
    the first is being handled is ignored (the checkpoint is already on its way).
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.requested = None
        self._previous = {}

    def install(self):
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def uninstall(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number, frame):
        del frame
        if self.requested is None:
            self.requested = signal.Signals(number).name
            logger.warning("%s received: checkpointing at the next batch boundary",
                           self.requested)
