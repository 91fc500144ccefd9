"""Where a pretrained model comes from: a local folder (checked here) or a hub id.

Nothing is downloaded by the toolkit itself; a local folder that does not exist must be
reported as such, not as the hub library's "Repo id must be in the form ..." (which is
what ``from_pretrained`` says when it is given a path that is not there).

Example
-------
>>> looks_local("/models/whisper-tiny.en"), looks_local("openai/whisper-tiny")
(True, False)
"""

import os


def looks_local(source):
    """Whether ``source`` names a local path rather than a hub id (``org/name``)."""
    return (os.path.isabs(source) or source.startswith(".") or source.startswith("~")
            or source.count("/") > 1 or os.path.exists(source))


def check_local_source(source, what):
    """Raise a clear ``FileNotFoundError`` if ``source`` is a local folder that is missing.

    Arguments
    ---------
    source : str
        Hub id or local folder.
    what : str
        What the folder should hold, for the message (e.g. ``"base encoder"``).

    Returns
    -------
    bool
        True when ``source`` is a local folder (load it with ``local_files_only``).
    """
    if not looks_local(source):
        return False
    if not os.path.isdir(source):
        parent = os.path.dirname(os.path.abspath(os.path.expanduser(source)))
        raise FileNotFoundError(
            f"{what} folder {source} is not a directory. If it is one of the bundled "
            f"offline models, create it with `python -m mowe.pretrained --out {parent}` "
            f"(or point --pretrained_dir at the folder that holds "
            f"{os.path.basename(source.rstrip('/'))}); otherwise give a hub id.")
    return True
