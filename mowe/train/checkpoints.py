"""A SpeechBrain Checkpointer whose checkpoints exist only once fully written.

SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and the parameter files after
it, and recognises a checkpoint by that file: a job killed while saving (SIGKILL, OOM
killer, node failure) leaves a checkpoint that looks complete but holds a truncated
file, and the next run fails to recover from it. Here ``CKPT.yaml`` is written last,
atomically (temporary file, fsync, rename); folders left incomplete by an interrupted
save are ignored by SpeechBrain's listing and removed at the next save.

Every file of a checkpoint is loaded with ``torch.load(weights_only=True)``: SpeechBrain's
default loader for modules, optimizers, schedulers and grad scalers
(``torch_recovery``) is replaced by :func:`safe_torch_recovery`, so a crafted file in
an experiment folder is refused instead of run, whatever torch's default is.
"""

import logging
import os
import shutil
import time

import yaml
from speechbrain.utils.checkpoints import (CKPT_PREFIX, DEFAULT_LOAD_HOOKS, METAFNAME,
                                           Checkpointer, get_default_hook,
                                           hook_on_loading_state_dict_checkpoint,
                                           torch_recovery)

logger = logging.getLogger(__name__)


def safe_torch_recovery(obj, path, end_of_epoch):
    """SpeechBrain's ``torch_recovery`` with ``weights_only=True`` (see
    :func:`mowe.train.resume.safe_load`): load a state dict into ``obj``."""
    from mowe.train.resume import safe_load

    del end_of_epoch
    state = hook_on_loading_state_dict_checkpoint(safe_load(path))
    try:
        obj.load_state_dict(state, strict=True)
    except TypeError:  # optimizers and schedulers take no ``strict``
        obj.load_state_dict(state)


class AtomicCheckpointer(Checkpointer):
    """:class:`speechbrain.utils.checkpoints.Checkpointer` with atomic checkpoints,
    loaded with ``weights_only=True``."""

    _pending_meta = None

    def _call_load_hooks(self, checkpoint):
        safe = [name for name, obj in self.recoverables.items()
                if name not in self.custom_load_hooks
                and get_default_hook(obj, DEFAULT_LOAD_HOOKS) is torch_recovery]
        for name in safe:
            self.custom_load_hooks[name] = safe_torch_recovery
        try:
            return super()._call_load_hooks(checkpoint)
        finally:
            for name in safe:
                del self.custom_load_hooks[name]

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch}
        meta.update(meta_to_include)
        self._pending_meta = (fpath, meta)  # written by save_checkpoint, after the params
        return meta

    def save_checkpoint(self, *args, **kwargs):
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if self._pending_meta is not None:
            fpath, meta = self._pending_meta
            self._pending_meta = None
            folder = os.path.dirname(fpath)
            for name in os.listdir(folder):  # parameter files on disk before the meta
                with open(os.path.join(folder, name), "rb") as handle:
                    os.fsync(handle.fileno())
            partial = f"{fpath}.partial"
            with open(partial, "w", encoding="utf-8") as handle:
                handle.write("# yamllint disable\n")
                handle.write(yaml.dump(meta))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, fpath)
            self._remove_incomplete(exclude=folder)
        return checkpoint

    def _remove_incomplete(self, exclude):
        for entry in os.scandir(self.checkpoints_dir):
            if entry.is_dir() and entry.name.startswith(CKPT_PREFIX) and \
                    entry.path != str(exclude) and \
                    not os.path.exists(os.path.join(entry.path, METAFNAME)):
                logger.warning("removing %s: incomplete (its save was interrupted)",
                               entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)


def not_an_epoch_checkpoint(checkpoint):
    """Deletion filter when every epoch's checkpoint is kept (``keep_epoch_checkpoints``).

    Only checkpoints without an ``epoch`` in their meta (intra-epoch ones) may be deleted,
    so learning curves can be scored from each epoch's weights afterwards.
    """
    return "epoch" not in checkpoint.meta


def recover_epoch(checkpointer, epoch):
    """Load the checkpoint saved at the end of ``epoch``; None if there is none.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The experiment's checkpointer.
    epoch : int
        Epoch number as logged in ``train_log.txt`` (1-based).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint or None
    """
    epoch = int(epoch)
    return checkpointer.recover_if_possible(
        ckpt_predicate=lambda checkpoint: checkpoint.meta.get("epoch") == epoch)


def saved_epochs(checkpointer):
    """Epoch numbers of the end-of-epoch checkpoints on disk, sorted."""
    return sorted(checkpoint.meta["epoch"] for checkpoint in checkpointer.list_checkpoints()
                  if "epoch" in checkpoint.meta)
