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
mowe.utils.atomic.OutputPathError: cannot write .../b.txt: it is a directory
"""

import contextlib
import errno
import logging
import os

logger = logging.getLogger(__name__)

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


# ------------------------------------------------------------------ output folders
class OutputFolderError(OSError):
    """An output folder the toolkit may not replace; ``str()`` says why and what to do."""

    def __str__(self):
        return self.args[0] if self.args else super().__str__()


def check_output_folder(out, is_ours, overwrite=False, what="output"):
    """Refuse, before any work, to write a folder over one the toolkit must not replace.

    Arguments
    ---------
    out : str
        The folder to write.
    is_ours : callable
        ``path -> bool``: whether ``path`` is a folder this command wrote before (e.g. a
        package, recognised by its own manifest).
    overwrite : bool
        Replace a previous folder of ours.
    what : str
        What the folder is, for messages.

    Raises
    ------
    OutputFolderError
        ``out`` is a file, a non-empty folder that is not ours (whatever ``overwrite``
        says: it is never deleted), or one of ours without ``overwrite``.
    """
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise OutputFolderError(f"{out} exists and is not a folder: choose another {what} "
                                "folder")
    if not os.listdir(out):
        return
    if not is_ours(out):
        raise OutputFolderError(
            f"{out} is not empty and is not a previous {what} (it holds files this command "
            f"did not write): choose a new or empty folder; nothing was deleted")
    if not overwrite:
        raise OutputFolderError(f"{out} already holds a {what}: pass --overwrite to replace "
                                "it, or choose another folder")


def _stale_siblings(out, kinds=("partial", "old")):
    """Staging (``.NAME.partial-PID-*``) and set-aside (``.NAME.old-PID-*``) folders of
    ``out`` left by a process that no longer runs (killed mid-way)."""
    parent = os.path.dirname(os.path.abspath(out))
    base = os.path.basename(os.path.abspath(out))
    stale = []
    try:
        names = os.listdir(parent)
    except OSError:
        return stale
    for name in names:
        for kind in kinds:
            prefix = f".{base}.{kind}-"
            if not name.startswith(prefix):
                continue
            pid_text = name[len(prefix):].split("-", 1)[0]
            if pid_text.isdigit() and not _process_alive(int(pid_text)):
                stale.append(os.path.join(parent, name))
    return stale


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def staging_folder(out):
    """A new empty folder beside ``out`` to build it in.

    Its name holds this process's id, so a later run recognises (and removes) the staging
    folders of runs that were killed, while those of a run still going are left alone.
    """
    import shutil
    import tempfile

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    for stale in _stale_siblings(out):
        logger.info("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)  # ours: named by this function
    return tempfile.mkdtemp(
        prefix=f".{os.path.basename(os.path.abspath(out))}.partial-{os.getpid()}-", dir=parent)


def replace_folder(staging, out, is_ours, overwrite=False, what="output"):
    """Move the finished ``staging`` folder to ``out`` (same file system).

    ``out`` is checked again (:func:`check_output_folder`); a previous folder of ours is
    renamed aside, the new one renamed into place, and only then the old one removed, so
    a crash leaves one complete folder at ``out`` (and possibly the old one beside it).
    """
    import shutil
    import tempfile

    check_output_folder(out, is_ours, overwrite, what)
    if os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
    if not os.path.exists(out):
        os.replace(staging, out)
        return out
    parent = os.path.dirname(os.path.abspath(out))
    old = tempfile.mkdtemp(
        prefix=f".{os.path.basename(os.path.abspath(out))}.old-{os.getpid()}-", dir=parent)
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)  # ours: checked above
    return out
