"""Audio loading: any soundfile-readable file to 16 kHz mono float32.

Example
-------
>>> import tempfile, numpy, soundfile
>>> path = tempfile.mktemp(suffix=".wav")
>>> soundfile.write(path, numpy.zeros(8000, dtype="float32"), 8000)
>>> load_audio(path).shape
torch.Size([16000])
"""

import os

import numpy as np
import torch

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that is missing, unreadable, empty or holds non-finite samples;
    the message names it."""


def load_audio(path, sample_rate=SAMPLE_RATE, start=None, stop=None):
    """Read ``path`` (optionally the ``[start, stop)`` seconds), mono, at ``sample_rate``.

    Other sample rates are resampled with torchaudio; multi-channel audio is averaged.

    Raises
    ------
    AudioError
        Missing, unreadable or empty file, or samples that are NaN or infinite (a float
        wav can hold them; they would poison every gradient of a training step).
    """
    import soundfile
    import torchaudio

    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        info = soundfile.info(path)
        frame_start = int(round((start or 0) * info.samplerate))
        frame_stop = int(round(stop * info.samplerate)) if stop is not None else None
        data, rate = soundfile.read(path, start=frame_start, stop=frame_stop,
                                    dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"cannot read audio file {path}: {error}") from error
    if data.shape[0] == 0:
        raise AudioError(f"audio file is empty: {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file holds NaN or infinite samples: {path}")
    signal = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        signal = torchaudio.functional.resample(signal, rate, sample_rate)
    return signal
