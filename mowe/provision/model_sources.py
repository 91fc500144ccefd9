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
            f"offline models, create it with `python -m mowe provision --out {parent}` "
            f"(or point --pretrained_dir at the folder that holds "
            f"{os.path.basename(source.rstrip('/'))}); otherwise give a hub id.")
    return True


# ------------------------------------------------------------ pinning frozen sources
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


class SourceMismatchError(RuntimeError):
    """A frozen model's weights differ from those a packaged model was trained on."""


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(folder, only=None):
    """Names of the weight files directly inside ``folder`` (or just ``only``)."""
    if only:
        return [only]
    return sorted(name for name in os.listdir(folder)
                  if name.endswith(WEIGHT_SUFFIXES) and os.path.isfile(os.path.join(folder, name)))


def _hub_snapshot(repo_id, revision=None):
    """Local folder of a hub model (downloaded if allowed, else from the cache)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:  # pragma: no cover - transformers depends on it
        raise SourceMismatchError(f"huggingface_hub is needed to fetch {repo_id}") from error
    try:
        return snapshot_download(repo_id, revision=revision)
    except Exception as error:  # offline, unknown repo, gated model, revision gone ...
        raise SourceMismatchError(
            f"cannot get {repo_id}" + (f" at revision {revision}" if revision else "")
            + f" from the Hugging Face hub or its local cache ({type(error).__name__}: "
              f"{error}). Download it where the hub is reachable, or point the package at "
              f"a local copy (python -m mowe infer --source NAME=DIR ...).") from error


def fingerprint_source(source, gguf_file=None):
    """Record where a frozen model comes from and the SHA-256 of its weight files.

    Arguments
    ---------
    source : str
        Local folder or hub id (a hub id is looked up in the local cache or downloaded).
    gguf_file : str, optional
        For a GGUF LLM: the one weight file inside ``source``.

    Returns
    -------
    dict
        ``{"source", "kind": "local"|"hub", "revision", "gguf_file", "sha256": {file: hex}}``.
    """
    record = {"source": source, "gguf_file": gguf_file, "revision": None}
    if looks_local(source):
        folder, record["kind"] = source, "local"
    else:
        folder, record["kind"] = _hub_snapshot(source), "hub"
        record["revision"] = os.path.basename(os.path.normpath(folder))
    record["sha256"] = {name: sha256_file(os.path.join(folder, name))
                        for name in weight_files(folder, gguf_file)}
    return record


def resolve_pinned_source(record, source=None):
    """The local folder to load a frozen model from, after checking its weights.

    Arguments
    ---------
    record : dict
        What :func:`fingerprint_source` recorded at packing time.
    source : str, optional
        Where the model is on this machine (default: ``record["source"]``). A hub id is
        fetched at the recorded revision (or found in the local cache).

    Returns
    -------
    str
        A local folder (or hub id when nothing was recorded to pin it to).

    Raises
    ------
    SourceMismatchError
        A weight file is missing or its SHA-256 differs from the recorded one.
    FileNotFoundError
        ``source`` is a local folder that does not exist.
    """
    source = source or record["source"]
    if looks_local(source):
        check_local_source(source, "frozen model")
        folder = source
    else:
        folder = _hub_snapshot(source, record.get("revision"))
    expected = record.get("sha256") or {}
    for name, digest in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise SourceMismatchError(
                f"{source} has no {name}: the package was trained on {record['source']}, "
                f"whose {name} has sha256 {digest}")
        actual = sha256_file(path)
        if actual != digest:
            raise SourceMismatchError(
                f"{path} has sha256 {actual}, but the package was trained on "
                f"{record['source']} whose {name} has sha256 {digest}: these are other "
                f"weights, and the trained parts would not fit them. Point the package at "
                f"the original model (--source), or pass check_sources=False / "
                f"--no_check_sources to load anyway.")
    return folder
