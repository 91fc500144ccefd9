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
import json
import logging
import os
import random
import re
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


class CheckpointFormatError(RuntimeError):
    """A checkpoint file that is not in the safe (tensors-only) format; the message
    names the file and what to do."""


def safe_load(path):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only.

    A file holding anything else (a pickle written with ``weights_only=False`` by an
    older version of this toolkit, or a crafted one that would run code) is refused
    without being executed.

    Raises
    ------
    CheckpointFormatError
        Naming the file, and how to go on.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise CheckpointFormatError(f"cannot read checkpoint file {path}: "
                                    f"{error.strerror or error}") from error
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError...
        raise CheckpointFormatError(
            f"{path}: refused to load ({_refusal_reason(error)}): it is not a tensors-only "
            f"file as this MoWE version writes; if it comes from an older version or an "
            f"unknown source, remove its checkpoint folder {os.path.dirname(str(path))} to "
            "resume from an earlier checkpoint (or start over)") from error


def _refusal_reason(error):
    """A short reason from torch's (long, multi-line) weights-only error."""
    text = str(error)
    match = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
    if match:
        return f"it would call {match.group(1)} when unpickled"
    first = text.strip().splitlines()[0] if text.strip() else ""
    if "Weights only load failed" in first or not first:
        return f"not loadable with weights_only=True: {type(error).__name__}"
    return f"{type(error).__name__}: {first[:160]}"


def _generator_state_to_tensors(state):
    """RNG states as tensors and plain values, loadable with ``weights_only=True``."""
    kind, keys, position, has_gauss, cached = state["numpy"]
    version, internal, gauss_next = state["random"]
    out = {"format": 2, "torch": state["torch"],
           "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                     "position": int(position), "has_gauss": int(has_gauss),
                     "cached_gaussian": float(cached)},
           "random": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                      "gauss_next": gauss_next}}
    if "cuda" in state:
        out["cuda"] = list(state["cuda"])
    return out


def _generator_state_from_tensors(saved):
    """Inverse of :func:`_generator_state_to_tensors`."""
    numpy_state, random_state = saved["numpy"], saved["random"]
    state = {"torch": saved["torch"],
             "numpy": (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                       numpy_state["position"], numpy_state["has_gauss"],
                       numpy_state["cached_gaussian"]),
             "random": (random_state["version"], tuple(random_state["state"].tolist()),
                        random_state["gauss_next"])}
    if "cuda" in saved:
        state["cuda"] = saved["cuda"]
    return state


# Every DDP process saves its own generator states (not only the main process).
@functools.partial(register_checkpoint_hooks, save_on_main_only=False)
class RandomStates:
    """Checkpointable random generator states (torch CPU/CUDA, numpy, random).

    Saved as tensors and plain values and loaded with ``weights_only=True``: a crafted
    file in an experiment folder cannot run code on resume (:func:`safe_load`).

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
        torch.save(_generator_state_to_tensors(self.capture()), _rank_path(path))

    @mark_as_loader
    def load(self, path, end_of_epoch):
        own = _rank_path(path)
        if not os.path.isfile(own):  # e.g. resumed with more processes than saved it
            logger.warning("no generator states for this process in %s; using rank 0's",
                           os.path.dirname(str(path)))
            own = str(path)
        saved = safe_load(own)
        try:
            state = _generator_state_from_tensors(saved)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise CheckpointFormatError(f"{own}: not a generator-state file of this MoWE "
                                        f"version ({error!r}); remove its checkpoint folder "
                                        "to resume from an earlier checkpoint") from error
        self.pending = (state, bool(end_of_epoch))

    def apply_pending(self, at_epoch_start):
        """Restore loaded states if this is the point they belong to."""
        if self.pending is not None and self.pending[1] == at_epoch_start:
            self.restore(self.pending[0])
            self.pending = None


@register_checkpoint_hooks
class TrainingStatistics:
    """Checkpointable loss-part and routing trackers of the training epoch in progress.

    Saved as plain numbers and strings, loaded with ``weights_only=True``
    (:func:`safe_load`).

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
        torch.save({"sums": {str(k): float(v) for k, v in parts.sums.items()},
                    "count": int(parts.count), "routing": routing.to_dict()}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        if end_of_epoch:
            return  # a finished epoch starts the next one with fresh trackers
        state = safe_load(path)
        try:
            self.brain.resumed_train_stats = statistics_from_dict(state)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise CheckpointFormatError(f"{path}: not a training-statistics file of this "
                                        f"MoWE version ({error!r}); remove its checkpoint "
                                        "folder to resume from an earlier checkpoint") from error


def statistics_from_dict(state):
    """``(LossPartsTracker, RoutingStatistics)`` from :meth:`TrainingStatistics.save`'s dict."""
    from mowe.train.stats import LossPartsTracker, RoutingStatistics

    parts = LossPartsTracker()
    parts.sums.update({str(k): float(v) for k, v in state["sums"].items()})
    parts.count = int(state["count"])
    routing = RoutingStatistics()
    for task, routers in state["routing"].items():
        for router, encoders in routers.items():
            for encoder, count in encoders.items():
                routing.counts[task][int(router)][int(encoder)] = int(count)
    return parts, routing


def truncate_loss_trace(path, step):
    """Drop the lines of a loss trace after optimizer step ``step`` (and cut-off lines).

    A run killed after tracing a step but before checkpointing it redoes that step on
    resume; without this the trace would hold it twice.

    Parameters
    ----------
    path : str
        JSON-lines trace (``optimizer_step`` per line); nothing happens if it is absent.
    step : int
        The resumed checkpoint's optimizer step (0 for a fresh start).

    Returns
    -------
    int
        Number of lines dropped.
    """
    from mowe.utils.atomic import write_text_atomic

    if not path or not os.path.isfile(path):
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                keep = int(json.loads(line)["optimizer_step"]) <= step
            except (ValueError, KeyError, TypeError):
                keep = False  # a line cut off by a kill, or not a trace line
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        write_text_atomic(path, "".join(kept), fsync=True)
        logger.info("%s: dropped %d line(s) after optimizer step %d (redone on resume)",
                    path, dropped, step)
    return dropped


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
