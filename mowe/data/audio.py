"""Audio loading: one checked decoder for every way audio comes in.

Training, validation, the command line and the servers all decode through
:func:`decode_audio`, which reads the header first and refuses, before any sample is
decoded, a clip whose sample rate is below ``min_rate`` (8 kHz: a 1 Hz WAV would be
resampled 16,000-fold), above 384 kHz, with more than 16 channels, or (given
``max_seconds``) longer than allowed; it then reads at most the frames it was asked for,
so a 132-byte FLAC whose header claims 2^36 samples never allocates them. What soundfile
cannot read goes to ffmpeg with a wall-clock cap and a bounded output (decoding stops
past ``max_seconds``) and only the end of its error output kept. Running out of memory
while decoding is an :class:`AudioError` like any other refusal.

Example
-------
>>> import tempfile, numpy, soundfile
>>> path = tempfile.mktemp(suffix=".wav")
>>> soundfile.write(path, numpy.zeros(8000, dtype="float32"), 8000)
>>> load_audio(path).shape
torch.Size([16000])
>>> soundfile.write(path, numpy.zeros(16000, dtype="float32"), 16000)
>>> decode_audio(path, max_seconds=0.5)
Traceback (most recent call last):
...
mowe.data.audio.AudioTooLongError: ... lasts 1.0 s; at most 0.5 s are accepted
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 8000       # telephone speech; below it a clip is a header trick
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 16
FFMPEG_TIMEOUT = 60.0        # seconds of wall clock for one ffmpeg decode
MAX_DECODE_SECONDS = 3600.0  # the longest clip decoded when the caller sets no limit
_STDERR_TAIL = 4096          # bytes of ffmpeg's error output kept for the message


class AudioError(ValueError):
    """An audio file that is missing, unreadable, empty, refused by a limit or holds
    non-finite samples; the message names it."""


class AudioTooLongError(AudioError):
    """A clip longer than the caller accepts (refused before it is decoded)."""


@dataclass
class AudioHeader:
    """What a file's header declares (read without decoding samples)."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self):
        return self.frames / self.sample_rate if self.sample_rate else float("inf")


def read_header(source):
    """The header of a soundfile-readable ``source`` (path or bytes), or None when
    soundfile cannot read it (ffmpeg may)."""
    import io

    import soundfile

    try:
        info = soundfile.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError):
        return None
    return AudioHeader(int(info.samplerate), int(info.channels), int(info.frames))


def check_header(header, what, max_seconds=None, min_rate=MIN_SAMPLE_RATE):
    """Refuse a header outside the limits (see the module notes)."""
    if header.sample_rate < min_rate:
        raise AudioError(f"{what} declares a sample rate of {header.sample_rate} Hz; at "
                         f"least {min_rate} Hz is accepted")
    if header.sample_rate > MAX_SAMPLE_RATE:
        raise AudioError(f"{what} declares a sample rate of {header.sample_rate} Hz; at "
                         f"most {MAX_SAMPLE_RATE} Hz is accepted")
    if not 1 <= header.channels <= MAX_CHANNELS:
        raise AudioError(f"{what} declares {header.channels} channels; 1 to {MAX_CHANNELS} "
                         "are accepted")
    if max_seconds is not None and header.seconds > max_seconds + 1e-6:
        raise AudioTooLongError(f"{what} lasts {header.seconds:.1f} s; at most {max_seconds:g} s "
                         "are accepted")


def decode_audio(source, sample_rate=SAMPLE_RATE, start=None, stop=None, max_seconds=None,
                 min_rate=MIN_SAMPLE_RATE, use_ffmpeg=True, what=None):
    """Any audio ``source`` (a file path or the bytes of a file) -> mono float32 tensor at
    ``sample_rate``, checked before it is decoded (see the module notes).

    Arguments
    ---------
    source : str or bytes
    sample_rate : int
        Output rate (resampled with torchaudio).
    start, stop : float, optional
        Read only ``[start, stop)`` seconds (soundfile-readable files).
    max_seconds : float, optional
        Refuse a clip (or window) longer than this, before decoding it (default:
        :data:`MAX_DECODE_SECONDS`, an hour: no model here takes more than 30 s).
    min_rate : int
        Lowest sample rate accepted.
    use_ffmpeg : bool
        Decode what soundfile cannot (mp3, m4a, mp4, webm ...) with ffmpeg.
    what : str, optional
        How to name the clip in messages (default: the path, or "audio data").

    Raises
    ------
    AudioError
    """
    import soundfile

    is_bytes = isinstance(source, (bytes, bytearray))
    source = bytes(source) if is_bytes else os.fspath(source)
    what = what or ("audio data" if is_bytes else source)
    if is_bytes and not source:
        raise AudioError(f"{what} is empty")
    if not is_bytes and not os.path.isfile(source):
        raise AudioError(f"audio file not found: {source}")
    header = read_header(source)
    if header is None:
        if not use_ffmpeg:
            raise AudioError(f"cannot read audio file {what}: not a format soundfile reads")
        return _checked(_ffmpeg_decode(source, sample_rate, max_seconds, what), what)
    first = int(round((start or 0) * header.sample_rate))
    last = header.frames if stop is None else min(header.frames,
                                                  int(round(stop * header.sample_rate)))
    window = AudioHeader(header.sample_rate, header.channels, max(0, last - first))
    check_header(window, what, MAX_DECODE_SECONDS if max_seconds is None else max_seconds,
                 min_rate)
    if window.frames == 0:
        raise AudioError(f"audio file is empty: {what}")
    import io

    try:
        data, rate = soundfile.read(io.BytesIO(source) if is_bytes else source, start=first,
                                    frames=window.frames, dtype="float32", always_2d=True)
    except MemoryError:
        raise AudioError(f"{what} is too large to decode ({window.frames} frames declared)") \
            from None
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        raise AudioError(f"cannot read audio file {what}: {error}") from error
    if data.shape[0] == 0:
        raise AudioError(f"audio file is empty: {what}")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file holds NaN or infinite samples: {what}")
    signal = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        import torchaudio

        signal = torchaudio.functional.resample(signal, rate, sample_rate)
    return signal


def load_audio(path, sample_rate=SAMPLE_RATE, start=None, stop=None):
    """Read ``path`` (optionally the ``[start, stop)`` seconds), mono, at ``sample_rate``:
    how training, validation and decoding read manifests (:func:`decode_audio` without
    ffmpeg: WAV, FLAC, OGG ...).

    Raises
    ------
    AudioError
        Missing, unreadable or empty file, a header outside the limits, or samples that
        are NaN or infinite (a float wav can hold them; they would poison every gradient
        of a training step).
    """
    return decode_audio(path, sample_rate, start, stop, use_ffmpeg=False)


def _ffmpeg_decode(source, sample_rate=SAMPLE_RATE, max_seconds=None, what="audio"):
    """Decode with ffmpeg to mono float32 at ``sample_rate``: at most ``max_seconds``
    (+1 s to tell a longer clip, which is refused) or :data:`MAX_DECODE_SECONDS` of output,
    within :data:`FFMPEG_TIMEOUT` seconds; only the end of ffmpeg's error output is kept.
    Written with subprocess rather than a library so that both bounds hold whatever the
    input claims."""
    import shutil
    import subprocess
    import tempfile
    import threading

    if shutil.which("ffmpeg") is None:
        raise AudioError(f"cannot read {what}: soundfile cannot, and ffmpeg (which reads "
                         "mp3/m4a/mp4/webm/...) is not installed")
    cap_seconds = MAX_DECODE_SECONDS if max_seconds is None else max_seconds + 1.0
    cap_bytes = int(cap_seconds * sample_rate) * 4
    is_bytes = isinstance(source, bytes)
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
               "-i", "pipe:0" if is_bytes else source, "-t", f"{cap_seconds:.3f}",
               "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE if is_bytes else None,
                                   stdout=subprocess.PIPE, stderr=errors)
        if is_bytes:
            def feed():
                try:
                    process.stdin.write(source)
                except OSError:  # ffmpeg stopped reading (bad data, or the cap)
                    pass
                finally:
                    try:
                        process.stdin.close()
                    except OSError:
                        pass

            threading.Thread(target=feed, daemon=True).start()
        fired = threading.Event()

        def stop():
            fired.set()
            process.kill()

        timer = threading.Timer(FFMPEG_TIMEOUT, stop)
        timer.start()
        chunks, size = [], 0
        try:
            while size <= cap_bytes:
                chunk = process.stdout.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            if size > cap_bytes:
                process.kill()
            process.stdout.close()
            returncode = process.wait()
            timer.cancel()
        timed_out = fired.is_set()
        errors.seek(max(0, errors.seek(0, 2) - _STDERR_TAIL))
        message = errors.read().decode("utf-8", "replace").strip().splitlines()
    if timed_out:
        raise AudioError(f"cannot read {what}: ffmpeg took over {FFMPEG_TIMEOUT:g} s")
    data = b"".join(chunks)
    if max_seconds is not None and len(data) // 4 > int(max_seconds * sample_rate) + 1:
        raise AudioTooLongError(f"{what} lasts more than {max_seconds:g} s; at most "
                         f"{max_seconds:g} s are accepted")
    if (returncode != 0 and size <= cap_bytes) or not data:
        raise AudioError(f"cannot read {what}: not audio that soundfile or ffmpeg can decode"
                         + (f" ({message[-1]})" if message else ""))
    data = data[: len(data) - len(data) % 4]
    return torch.from_numpy(np.frombuffer(data, dtype="<f4").copy())


def _checked(signal, what):
    if signal.numel() == 0:
        raise AudioError(f"{what} is empty")
    if not torch.isfinite(signal).all():
        raise AudioError(f"{what} holds NaN or infinite samples")
    return signal


def read_audio_file(path, sample_rate=SAMPLE_RATE, max_seconds=None):
    """Any audio file soundfile or ffmpeg reads -> mono float32 at ``sample_rate``
    (:func:`decode_audio`: WAV/FLAC/OGG exactly as in training, other formats through
    ffmpeg), refused before decoding if longer than ``max_seconds``."""
    return decode_audio(path, sample_rate, max_seconds=max_seconds)


def read_audio_bytes(data, sample_rate=SAMPLE_RATE, what="audio data", max_seconds=None):
    """Encoded audio (the bytes of a wav/flac/mp3/... file) -> mono float32 tensor,
    refused before decoding if longer than ``max_seconds`` (:func:`decode_audio`)."""
    if not data:
        raise AudioError(f"{what} is empty")
    return decode_audio(bytes(data), sample_rate, max_seconds=max_seconds, what=what)


def waveform_to_mono(waveform, rate, sample_rate=SAMPLE_RATE, what="waveform",
                     max_seconds=None, min_rate=MIN_SAMPLE_RATE):
    """A waveform (numpy or torch; ``[samples]``, or 2-D with channels on the shorter
    axis) at ``rate`` Hz -> mono float32 tensor at ``sample_rate``; the rate and length
    limits of :func:`decode_audio` are checked before resampling."""
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
    check_header(AudioHeader(int(rate), 1, signal.numel()), what, max_seconds, min_rate)
    _checked(signal, what)
    if int(rate) != sample_rate:
        signal = torchaudio.functional.resample(signal, int(rate), sample_rate)
    return signal
