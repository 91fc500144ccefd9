"""A SpeechBrain Checkpointer whose checkpoints exist only once fully written.

SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and the parameter files after
it, and recognises a checkpoint by that file: a job killed while saving (SIGKILL, OOM
killer, node failure) leaves a checkpoint that looks complete but holds a truncated
file, and the next run fails to recover from it. Here ``CKPT.yaml`` is written last,
atomically (temporary file, fsync, rename); folders left incomplete by an interrupted
save are ignored by SpeechBrain's listing and removed at the next save.
"""

import logging
import os
import shutil
import time

import yaml
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer

logger = logging.getLogger(__name__)


class AtomicCheckpointer(Checkpointer):
    """:class:`speechbrain.utils.checkpoints.Checkpointer` with atomic checkpoints."""

    _pending_meta = None

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
