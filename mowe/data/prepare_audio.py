"""Audio work of the corpus preparation scripts: durations and the duration filter,
parallel (sharded, resumable) jobs, ffmpeg conversion to 16 kHz mono WAV, resampling,
and concatenation of clips.

Used by the scripts in ``egs/<corpus>/local/`` beside :mod:`mowe.data.prepare`.
"""

import concurrent.futures
import logging
import os
import shutil
import subprocess
import sys
from math import gcd

import numpy as np

from mowe.data.prepare import SAMPLE_RATE, AudioReadError, PrepareError, active_shard, one_line

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- durations

class DurationFilter:
    """Keeps items whose duration lies in ``[min_duration, max_duration]`` seconds.

    Parameters
    ----------
    min_duration, max_duration : float, optional
        ``None`` means no bound.
    """

    def __init__(self, min_duration=None, max_duration=None):
        if (min_duration is not None and max_duration is not None
                and min_duration > max_duration):
            raise PrepareError(f"--min_duration {min_duration} is larger than "
                               f"--max_duration {max_duration}")
        self.min_duration = min_duration
        self.max_duration = max_duration

    @classmethod
    def from_args(cls, args):
        """The filter of the parsed ``--min_duration`` and ``--max_duration``."""
        return cls(args.min_duration, args.max_duration)

    def reason(self, duration):
        """Why ``duration`` is out of range (a skip reason), or ``None`` if it is kept.

        >>> keep = DurationFilter(min_duration=0.5, max_duration=30)
        >>> keep.reason(12.0) is None, keep.reason(31.5)
        (True, 'too long: 31.50 s > 30 s')
        """
        if duration <= 0:
            return "empty audio: 0 s"
        if self.min_duration is not None and duration < self.min_duration:
            return f"too short: {duration:.2f} s < {self.min_duration} s"
        if self.max_duration is not None and duration > self.max_duration:
            return f"too long: {duration:.2f} s > {self.max_duration} s"
        return None


def audio_duration(path):
    """Duration of an audio file in seconds, from its header (``soundfile.info``).

    Raises
    ------
    AudioReadError
        Missing or unreadable file (message ``cannot read audio: ...``).
    """
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises several types for damaged files
        raise AudioReadError(f"cannot read audio: {os.path.basename(path)}: "
                             f"{one_line(error)}") from error
    if info.samplerate <= 0:
        raise AudioReadError(f"cannot read audio: {os.path.basename(path)}: no sample rate")
    return info.frames / info.samplerate


def _duration_or_error(path):
    try:
        return audio_duration(path)
    except AudioReadError as error:
        return error


def measure_durations(paths, jobs=1, desc="durations"):
    """Durations of many files, read in parallel.

    Returns
    -------
    dict
        ``{path: float seconds or AudioReadError}``.
    """
    unique = list(dict.fromkeys(paths))
    results = run_parallel(_duration_or_error, unique, jobs, desc)
    return dict(zip(unique, results))


def checked_duration(duration, duration_filter):
    """``(duration, None)`` when usable, else ``(None, skip reason)``.

    ``duration`` is a float or an :class:`AudioReadError` from :func:`measure_durations`.
    """
    if isinstance(duration, Exception):
        return None, str(duration)
    reason = duration_filter.reason(duration)
    return (None, reason) if reason else (duration, None)


# ----------------------------------------------------------------------------- parallel work

_NOT_SHARDED = object()


def run_parallel(function, items, jobs=1, desc=None, other_shard_result=_NOT_SHARDED):
    """``[function(item) for item in items]`` on ``jobs`` threads, with a progress bar.

    Threads suit the work here: ffmpeg subprocesses and libsndfile I/O release the GIL.
    Resumable audio work passes ``other_shard_result``: a run with ``--shard J/N`` then
    does only items J, J+N, ... and returns ``other_shard_result`` for the rest.
    """
    from tqdm import tqdm

    items = list(items)
    shard = active_shard()
    if shard is not None and other_shard_result is not _NOT_SHARDED:
        index, count = shard
        mine = list(range(index - 1, len(items), count))
        done = run_parallel(function, [items[i] for i in mine], jobs, desc)
        results = [other_shard_result] * len(items)
        for position, result in zip(mine, done):
            results[position] = result
        return results
    bar = tqdm(total=len(items), desc=desc, unit="item", disable=not desc or not items,
               file=sys.stderr, mininterval=1.0)
    try:
        if jobs <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(function, item) for item in items]
            for _ in concurrent.futures.as_completed(futures):
                bar.update()
            return [future.result() for future in futures]
    finally:
        bar.close()


def is_readable_audio(path):
    """Whether ``path`` exists and soundfile reads a non-empty header from it."""
    if not os.path.isfile(path):
        return False
    try:
        return audio_duration(path) > 0
    except AudioReadError:
        return False


def require_ffmpeg():
    """The path of ``ffmpeg``, or :class:`PrepareError` saying how to install it."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise PrepareError("ffmpeg not found on PATH (install it, e.g. `apt-get install ffmpeg`)")
    return path


def _ffmpeg_to_wav(job):
    """Convert one file; return ``None`` or an error message. Skips readable outputs."""
    source, target = job
    if is_readable_audio(target):
        return None
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.partial"
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-i", source, "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
               "-c:a", "pcm_s16le", "-f", "wav", partial]
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    if result.returncode != 0 or not is_readable_audio(partial):
        if os.path.exists(partial):
            os.remove(partial)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {result.returncode}"
        return f"ffmpeg failed: {os.path.basename(source)}: {detail}"
    os.replace(partial, target)
    return None


def convert_to_wav(pairs, jobs=1, desc="ffmpeg"):
    """Convert audio (or the audio track of a video) to 16 kHz mono 16-bit wav.

    Parallel (``jobs`` ffmpeg processes) and resumable: targets that exist and are
    readable are kept; each conversion writes ``<target>.partial`` and renames it.

    Parameters
    ----------
    pairs : list of (str, str)
        ``(source, target)`` paths.

    Returns
    -------
    dict
        ``{target: None on success, or the error message}``.
    """
    require_ffmpeg()
    pairs = list(pairs)
    errors = run_parallel(_ffmpeg_to_wav, pairs, jobs, desc,
                          other_shard_result="converted by another shard job")
    return {target: error for (_, target), error in zip(pairs, errors)}


def resample(signal, rate, target_rate=SAMPLE_RATE):
    """Resample a 1-D float signal with a polyphase filter (scipy)."""
    if rate == target_rate:
        return signal
    from scipy.signal import resample_poly

    divisor = gcd(int(rate), int(target_rate))
    return resample_poly(signal, target_rate // divisor, rate // divisor).astype(np.float32)


def read_mono(path, target_rate=SAMPLE_RATE):
    """A file as a mono float32 signal at ``target_rate``.

    Raises
    ------
    AudioReadError
    """
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioReadError(f"cannot read audio: {os.path.basename(path)}: "
                             f"{one_line(error)}") from error
    return resample(data.mean(axis=1), rate, target_rate)


def write_wav_atomic(path, signal, rate=SAMPLE_RATE):
    """Write a 16-bit wav through ``<path>.partial`` and a rename."""
    import soundfile

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    soundfile.write(partial, np.clip(signal, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(partial, path)
    return path


def concatenate_to_wav(sources, target):
    """Concatenate audio files (in the given order) into one 16 kHz mono wav.

    Resumable: an existing readable ``target`` is kept.

    Returns
    -------
    float
        Duration of ``target`` in seconds.

    Raises
    ------
    AudioReadError
        A source that cannot be read (nothing is written then).
    """
    if is_readable_audio(target):
        return audio_duration(target)
    signal = np.concatenate([read_mono(path) for path in sources])
    write_wav_atomic(target, signal)
    return len(signal) / SAMPLE_RATE
