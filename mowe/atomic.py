"""Atomic output files: written to ``<path>.partial`` and renamed into place.

A crash leaves the old file or the new one, never half a file; a path that cannot be
written (a directory of that name, an immutable or read-only file, a missing or
read-only folder, a full disk) raises :class:`OutputPathError` with one line naming
the path, and leaves no ``.partial`` behind.

Example
-------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> write_text_atomic(os.path.join(folder, "a.txt"), "hello\\n")  # doctest: +ELLIPSIS
'.../a.txt'
>>> os.mkdir(os.path.join(folder, "b.txt"))
>>> write_text_atomic(os.path.join(folder, "b.txt"), "x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mowe.atomic.OutputPathError: cannot write .../b.txt: it is a directory
"""

import contextlib
import errno
import os

PARTIAL_SUFFIX = ".partial"


class OutputPathError(OSError):
    """An output file that cannot be written; ``str()`` is one line naming the path."""

    def __str__(self):
        return self.args[0] if self.args else super().__str__()


def check_writable(path):
    """Raise :class:`OutputPathError` now if ``path`` can clearly not be replaced.

    Catches a directory in the way before any (long) work is done; other failures
    (immutable file, full disk) surface when writing.
    """
    if os.path.isdir(path):
        raise OutputPathError(f"cannot write {path}: it is a directory")


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def _reason(error):
    if error.errno == errno.EPERM:
        return "operation not permitted (an immutable file or folder?)"
    return error.strerror or str(error)


def write_text_atomic(path, text, fsync=False):
    """Write ``text`` (UTF-8) to ``path`` through ``<path>.partial`` and a rename.

    Parameters
    ----------
    path : str
    text : str
    fsync : bool
        Sync the data to disk before the rename (for files a crash must not lose).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    OutputPathError
        The path cannot be written; no ``.partial`` file is left behind.
    """
    path = os.fspath(path)
    check_writable(path)
    partial = path + PARTIAL_SUFFIX
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        _remove(partial)
        if isinstance(error, IsADirectoryError) and os.path.isdir(path):
            raise OutputPathError(f"cannot write {path}: it is a directory") from error
        raise OutputPathError(f"cannot write {path}: {_reason(error)}") from error
    return path
