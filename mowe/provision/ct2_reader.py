"""A reader for CTranslate2 ``model.bin`` files (format version 6).

faster-whisper checkpoints ship Whisper weights in this format. The project writes its
own small reader instead of depending on the ``ctranslate2`` runtime: converting only
needs the tensors, and the runtime is a large compiled package (it is used in the test
suite to check the conversion).

Layout (little-endian)::

    uint32 version, string spec_name, uint32 spec_revision, uint32 n_variables
    n_variables x (string name, uint8 rank, uint32 dims[rank], uint8 dtype,
                   uint32 n_bytes, n_bytes of raw data)
    [version >= 5] uint32 n_aliases, n_aliases x (string alias, string target)

Strings are a uint16 byte count followed by the bytes (NUL-terminated). dtype codes:
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
"""

import os
import struct

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
SUPPORTED_VERSIONS = (5, 6)


class CT2FormatError(ValueError):
    """A file that is not a readable CTranslate2 model; the message says where it broke."""


class _Reader:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as handle:
            self.data = memoryview(handle.read())
        self.offset = 0

    def take(self, count, what):
        if count < 0 or self.offset + count > len(self.data):
            raise CT2FormatError(
                f"{self.path}: truncated or corrupt CTranslate2 file (needed {count} bytes "
                f"for {what} at byte {self.offset}, file has {len(self.data)})"
            )
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def uint(self, size, what):
        fmt = {1: "<B", 2: "<H", 4: "<I"}[size]
        return struct.unpack(fmt, self.take(size, what))[0]

    def string(self, what):
        length = self.uint(2, what)
        raw = bytes(self.take(length, what)).rstrip(b"\0")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CT2FormatError(f"{self.path}: corrupt {what} at byte {self.offset}") from error


def read_ct2_model(path):
    """Read every variable of a CTranslate2 model.

    Arguments
    ---------
    path : str
        A ``model.bin`` file, or the directory holding it.

    Returns
    -------
    spec : str
        The model spec name (e.g. ``WhisperSpec``).
    variables : dict
        name -> numpy array (bfloat16 is returned as float32); aliases resolved.

    Raises
    ------
    CT2FormatError
        Missing, truncated or corrupt file, or an unsupported format version.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if not os.path.isfile(path):
        raise CT2FormatError(f"CTranslate2 model file not found: {path}")
    reader = _Reader(path)
    version = reader.uint(4, "the format version")
    if version not in SUPPORTED_VERSIONS:
        raise CT2FormatError(f"{path}: unsupported CTranslate2 format version {version} "
                             f"(this reader knows {SUPPORTED_VERSIONS})")
    spec = reader.string("the spec name")
    reader.uint(4, "the spec revision")
    count = reader.uint(4, "the variable count")
    variables = {}
    for _ in range(count):
        name = reader.string("a variable name")
        rank = reader.uint(1, f"the rank of {name}")
        dims = [reader.uint(4, f"the shape of {name}") for _ in range(rank)]
        code = reader.uint(1, f"the dtype of {name}")
        if code not in DTYPES:
            raise CT2FormatError(f"{path}: variable {name} has unknown dtype code {code}")
        size = reader.uint(4, f"the size of {name}")
        raw = reader.take(size, f"the data of {name}")
        expected = int(np.prod(dims)) * (2 if code in (2, 4, 5) else 4 if code in (0, 3) else 1)
        if size != expected:
            raise CT2FormatError(f"{path}: variable {name} holds {size} bytes but its shape "
                                 f"{dims} needs {expected}")
        if code == 5:  # bfloat16: the high half of a float32
            array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=DTYPES[code])
        variables[name] = array.reshape(dims)
    if reader.offset < len(reader.data):
        aliases = reader.uint(4, "the alias count")
        for _ in range(aliases):
            alias = reader.string("an alias")
            target = reader.string("an alias target")
            if target not in variables:
                raise CT2FormatError(f"{path}: alias {alias} points to unknown {target}")
            variables[alias] = variables[target]
    return spec, variables
