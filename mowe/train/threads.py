"""CPU threads that follow the share a recipe's stage driver writes.

When several systems' jobs share one machine's cores (``recipes/stages.sh``,
``--system_jobs``), each job starts with its share (``OMP_NUM_THREADS``). Systems do
not take equally long (the baseline has no weak encoders), so when one job ends the
driver writes the jobs still running a larger share to the file named by
``$MOWE_THREAD_SHARE_FILE``; training and decoding read it between batches and take it
up with :func:`torch.set_num_threads` (torch sizes its thread pool from
``OMP_NUM_THREADS`` only at start).
"""

import logging
import os

import torch

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "MOWE_THREAD_SHARE_FILE"


class ThreadShare:
    """Reads the thread share file, if the environment names one, and applies it.

    Parameters
    ----------
    path : str, optional
        The share file (default: ``$MOWE_THREAD_SHARE_FILE``; neither: does nothing).

    Example
    -------
    >>> import tempfile
    >>> before = torch.get_num_threads()
    >>> path = os.path.join(tempfile.mkdtemp(), "share")
    >>> share = ThreadShare(path)
    >>> share.update()  # no file yet: nothing changes
    >>> torch.get_num_threads() == before
    True
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("1\\n")
    >>> share.update()
    >>> torch.get_num_threads()
    1
    >>> torch.set_num_threads(before)
    """

    def __init__(self, path=None):
        self.path = path if path is not None else os.environ.get(ENVIRONMENT_VARIABLE)
        self._last_text = None

    def update(self):
        """Set torch's thread count to the file's number when it changed (a few
        microseconds when it did not: one small read)."""
        if not self.path:
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError:  # not written yet
            return
        if text == self._last_text:
            return
        self._last_text = text
        try:
            threads = int(text)
        except ValueError:
            logger.warning("thread share file %s holds %r, not a number: ignored",
                           self.path, text)
            return
        if threads >= 1 and threads != torch.get_num_threads():
            logger.info("CPU threads: %d -> %d (the other systems' jobs have ended)",
                        torch.get_num_threads(), threads)
            torch.set_num_threads(threads)
