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


def _ffmpeg_decode(args, data=None, sample_rate=SAMPLE_RATE, what="audio"):
    """Decode with ffmpeg to mono float32 at ``sample_rate`` (``args``: the input)."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        raise AudioError(f"cannot read {what}: soundfile cannot, and ffmpeg (which reads "
                         "mp3/m4a/mp4/webm/...) is not installed")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args,
               "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]
    try:
        result = subprocess.run(command, input=data, capture_output=True, timeout=120,
                                check=False)
    except subprocess.TimeoutExpired as error:
        raise AudioError(f"cannot read {what}: ffmpeg took over 120 s") from error
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(f"cannot read {what}: not audio that soundfile or ffmpeg can decode"
                         + (f" ({message[-1]})" if message else ""))
    return torch.from_numpy(np.frombuffer(result.stdout, dtype="<f4").copy())


def _checked(signal, what):
    if signal.numel() == 0:
        raise AudioError(f"{what} is empty")
    if not torch.isfinite(signal).all():
        raise AudioError(f"{what} holds NaN or infinite samples")
    return signal


def read_audio_file(path, sample_rate=SAMPLE_RATE):
    """Any audio file soundfile or ffmpeg reads -> mono float32 at ``sample_rate``.

    WAV/FLAC/OGG go through :func:`load_audio` (exactly as in training and decoding);
    other formats (mp3, m4a, mp4, webm, ...) through ffmpeg.
    """
    try:
        return load_audio(path, sample_rate)
    except AudioError as error:
        if not os.path.isfile(path) or "cannot read" not in str(error):
            raise
    return _checked(_ffmpeg_decode(["-i", path], sample_rate=sample_rate, what=path), path)


def read_audio_bytes(data, sample_rate=SAMPLE_RATE, what="audio data"):
    """Encoded audio (the bytes of a wav/flac/mp3/... file) -> mono float32 tensor."""
    import io

    import soundfile
    import torchaudio

    if not data:
        raise AudioError(f"{what} is empty")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        signal = torch.from_numpy(samples).mean(dim=1)
        _checked(signal, what)
        if rate != sample_rate:
            signal = torchaudio.functional.resample(signal, rate, sample_rate)
        return signal
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as error:
        if isinstance(error, AudioError):
            raise
    return _checked(_ffmpeg_decode(["-i", "pipe:0"], data, sample_rate, what), what)


def waveform_to_mono(waveform, rate, sample_rate=SAMPLE_RATE, what="waveform"):
    """A waveform (numpy or torch; ``[samples]``, or 2-D with channels on the shorter
    axis) at ``rate`` Hz -> mono float32 tensor at ``sample_rate``."""
    import torchaudio

    signal = torch.as_tensor(np.asarray(waveform) if not torch.is_tensor(waveform)
                             else waveform).detach().to("cpu", torch.float32)
    if signal.dim() == 2:
        signal = signal.mean(dim=0 if signal.shape[0] <= signal.shape[1] else 1)
    if signal.dim() != 1:
        raise AudioError(f"{what} must be 1-D (samples) or 2-D (channels x samples), "
                         f"not of shape {tuple(signal.shape)}")
    if not rate or int(rate) <= 0:
        raise AudioError(f"{what} needs a positive sample rate, not {rate!r}")
    _checked(signal, what)
    if int(rate) != sample_rate:
        signal = torchaudio.functional.resample(signal, int(rate), sample_rate)
    return signal
