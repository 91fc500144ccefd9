"""Shared machinery of the real-corpus preparation scripts (``egs/<corpus>/local/``).

Each script reads a corpus in its official layout and writes ``OUT/{train,valid,test}.json``
in the toolkit's manifest schema (see :mod:`mowe.data.manifest`) plus
``OUT/prepare_report.json``, which lists every skipped item with its reason. This module
holds what the scripts share: the common command-line options, atomic manifest writing,
the skip report, the duration filter, reading durations, parallel and resumable audio
conversion (ffmpeg) and concatenation, CSV reading, and the AudioBench test sets.

Corpus knowledge (layouts, labels, ids) stays in the scripts.

Example
-------
>>> report = SkipReport()
>>> report.skip("train", "utt1", "missing audio: utt1.flac")
>>> report.summary("train", kept=3)
'train: kept 3, skipped 1 (missing audio: 1)'
"""

import argparse
import concurrent.futures
import csv
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from math import gcd

import numpy as np

from mowe.utils.atomic import OutputPathError, write_text_atomic

SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")
REPORT_NAME = "prepare_report.json"
AUDIOBENCH_FOLDER = "audiobench_test"

logger = logging.getLogger("mowe.prepare")


class PrepareError(Exception):
    """A problem the user has to fix (wrong path, missing tool or package).

    The scripts print the message as one line (``error: ...``) and exit with status 1.
    """


class AudioReadError(ValueError):
    """An audio file that cannot be read; the message starts with ``cannot read audio:``."""


# ----------------------------------------------------------------------------- command line

# (index, count) while a script runs as job ``index`` of an array of ``count`` (--shard)
_SHARD = None


def activate_shard(text):
    """``--shard J/N``: this run is job J of an array of N (see :func:`run_parallel`).

    Returns the ``(J, N)`` pair; raises ``argparse.ArgumentTypeError`` when malformed.
    """
    global _SHARD
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected J/N such as 2/4, not {text!r}")
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"shard {index} of {count} does not exist")
    _SHARD = (index, count)
    return _SHARD


def add_common_arguments(parser):
    """Add the options every preparation script has.

    ``--save_folder``, ``--min_duration``, ``--max_duration``, ``--seed``, ``--jobs``,
    ``--audiobench_test`` and ``--shard``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--save_folder", required=True,
                        help="where {train,valid,test}.json and prepare_report.json go")
    parser.add_argument("--min_duration", type=float, default=None, metavar="SECONDS",
                        help="skip items shorter than this (default: keep all)")
    parser.add_argument("--max_duration", type=float, default=None, metavar="SECONDS",
                        help="skip items longer than this (default: keep all)")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed of the instruction draws (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel workers for audio work (default: %(default)s)")
    parser.add_argument("--audiobench_test", default=None, metavar="DIR",
                        help="take the test split from this local copy of the AudioBench "
                             "test set (Hugging Face `datasets.save_to_disk` folder) "
                             "instead of the corpus's own test split")
    parser.add_argument("--shard", type=activate_shard, default=None, metavar="J/N",
                        help="run as job J of an array of N: do only every N-th audio "
                             "conversion (from the J-th) and write no manifest; the run "
                             "without --shard afterwards reuses that audio (conversions "
                             "are resumable) and writes the manifests")


def make_parser(description, epilog=None):
    """An ``ArgumentParser`` that keeps the layout of ``description`` in ``--help``."""
    return argparse.ArgumentParser(description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def setup_logging():
    """Log ``INFO`` and above to stderr as plain lines."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run_main(main, argv=None):
    """Run a script's ``main(argv)``; a :class:`PrepareError` exits with ``error: ...``.

    Parameters
    ----------
    main : callable
        Takes the argument list (``None``: ``sys.argv[1:]``).
    argv : list of str, optional
    """
    setup_logging()
    try:
        main(argv)
    except (PrepareError, OutputPathError) as error:
        sys.exit(f"error: {error}")


def require_folder(path, what):
    """The absolute path of an existing folder, or :class:`PrepareError` naming ``what``."""
    if not path or not os.path.isdir(path):
        raise PrepareError(f"{what} not found: {path}")
    return os.path.abspath(path)


def require_file(path, what):
    """The absolute path of an existing file, or :class:`PrepareError` naming ``what``."""
    if not path or not os.path.isfile(path):
        raise PrepareError(f"{what} not found: {path}")
    return os.path.abspath(path)


def split_rng(seed, split):
    """The instruction generator of one split: same seed and split, same draws."""
    return random.Random(f"{seed}:{split}")


# ----------------------------------------------------------------------------- writing

def write_json_atomic(data, path):
    """Write ``data`` as JSON to ``<path>.partial``, then rename it to ``path``.

    A crash leaves either the old file or the new one, never half a file.

    Raises
    ------
    OutputPathError
        ``path`` cannot be written (one line naming it; no ``.partial`` is left).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputPathError(f"cannot create folder {folder}: "
                              f"{error.strerror or error}") from error
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_manifest(entries, path):
    """Write a manifest (``{id: entry}``) atomically; return ``path``."""
    return write_json_atomic(entries, path)


def make_entry(wav, duration, task, instruction, answer, **extra):
    """One manifest entry in the toolkit's schema (extra fields after the required ones)."""
    entry = {"wav": os.path.abspath(wav), "duration": round(float(duration), 4),
             "task": task, "instruction": instruction, "answer": answer}
    entry.update(extra)
    return entry


# ----------------------------------------------------------------------------- skip report

def reason_kind(reason):
    """The category of a skip reason: the text before its first colon."""
    return reason.split(":", 1)[0].strip()


class SkipReport:
    """Items left out of the manifests, with reasons, and the kept counts per split.

    ``write`` stores ``prepare_report.json``::

        {"splits": {"train": {"kept": N, "skipped": M, "reasons": {kind: count},
                              "items": [{"id": ..., "reason": ...}]}, ...},
         ...extra sections (e.g. "missing_clips")}
    """

    def __init__(self):
        self.items = {}
        self.kept = {}
        self.extra = {}

    def skip(self, split, item_id, reason):
        """Record that ``item_id`` of ``split`` is left out because of ``reason``."""
        self.items.setdefault(split, []).append({"id": str(item_id), "reason": reason})

    def skipped(self, split):
        """The ``{"id", "reason"}`` records of one split."""
        return self.items.get(split, [])

    def reason_counts(self, split):
        """``{reason kind: count}`` of one split, most frequent first."""
        return dict(Counter(reason_kind(item["reason"]) for item in self.skipped(split))
                    .most_common())

    def summary(self, split, kept=None):
        """``"train: kept N, skipped M (reason: count, ...)"``."""
        kept = self.kept.get(split, 0) if kept is None else kept
        line = f"{split}: kept {kept}, skipped {len(self.skipped(split))}"
        counts = self.reason_counts(split)
        if counts:
            line += " (" + ", ".join(f"{kind}: {n}" for kind, n in counts.items()) + ")"
        return line

    def finish_split(self, split, kept):
        """Record the kept count of ``split`` and log its summary line."""
        self.kept[split] = kept
        logger.info(self.summary(split))

    def as_dict(self):
        """The report as written to ``prepare_report.json``."""
        splits = {}
        for split in list(self.kept) + [s for s in self.items if s not in self.kept]:
            splits[split] = {"kept": self.kept.get(split, 0),
                             "skipped": len(self.skipped(split)),
                             "reasons": self.reason_counts(split),
                             "items": self.skipped(split)}
        report = {"splits": splits}
        report.update(self.extra)
        return report

    def write(self, save_folder):
        """Write ``save_folder/prepare_report.json``; return its path (with ``--shard``:
        nothing, the unsharded run reports)."""
        if _SHARD is not None:
            return None
        path = write_json_atomic(self.as_dict(), os.path.join(save_folder, REPORT_NAME))
        logger.info("report: %s", path)
        return path


def write_split(entries, split, save_folder, report):
    """Write ``save_folder/<split>.json`` and log the split's kept/skipped summary
    (as one job of an array, ``--shard``: nothing; the unsharded run writes it)."""
    if _SHARD is not None:
        logger.info("%s: shard %d/%d did its share of the audio; no manifest written",
                    split, *_SHARD)
        return None
    if not entries:
        logger.warning("%s: no items kept; writing an empty manifest", split)
    path = write_manifest(entries, os.path.join(save_folder, f"{split}.json"))
    report.finish_split(split, len(entries))
    return path


def write_splits(save_folder, corpus_splits, corpus_entries, audiobench_entries):
    """Write every split's manifest, then the skip report.

    Parameters
    ----------
    save_folder : str
    corpus_splits : container of str
        The splits made from the corpus itself; the others (the test split, with
        ``--audiobench_test``) come from the AudioBench test set.
    corpus_entries : callable
        ``corpus_entries(split, report) -> {id: entry}``.
    audiobench_entries : callable
        ``audiobench_entries(report) -> {id: entry}``.
    """
    save_folder = os.path.abspath(save_folder)
    report = SkipReport()
    for split in SPLITS:
        entries = (corpus_entries(split, report) if split in corpus_splits
                   else audiobench_entries(report))
        write_split(entries, split, save_folder, report)
    report.write(save_folder)


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
                             f"{_one_line(error)}") from error
    if info.samplerate <= 0:
        raise AudioReadError(f"cannot read audio: {os.path.basename(path)}: no sample rate")
    return info.frames / info.samplerate


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


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
    if _SHARD is not None and other_shard_result is not _NOT_SHARDED:
        index, count = _SHARD
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
                             f"{_one_line(error)}") from error
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


# ----------------------------------------------------------------------------- input files

def read_csv(path, required_columns, encodings=("utf-8-sig", "cp1252")):
    """Rows of a CSV file as ``(line number, {column: value})``.

    The text is decoded with the first encoding that works; if none does, as UTF-8 with
    undecodable bytes replaced.

    Raises
    ------
    PrepareError
        Missing file or missing columns.
    """
    require_file(path, "CSV file")
    with open(path, "rb") as handle:
        raw = handle.read()
    for encoding in encodings:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = raw.decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in required_columns if name not in columns]
    if missing:
        raise PrepareError(f"{path} lacks the columns {', '.join(missing)} "
                           f"(found: {', '.join(columns) or 'none'})")
    rows = []
    try:
        for row in reader:
            clean = {(key or "").strip(): (value or "").strip() if isinstance(value, str)
                     else "" for key, value in row.items()}
            rows.append((reader.line_num, clean))
    except csv.Error as error:
        raise PrepareError(f"{path}:{reader.line_num}: malformed CSV ({error})") from error
    return rows


def read_json(path, what):
    """A JSON file, or :class:`PrepareError` when missing or invalid."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PrepareError(f"{what} {path} is not valid JSON: {_one_line(error)}") from error


def index_files(root, suffixes):
    """``{file name: [paths]}`` of the files under ``root`` ending with ``suffixes``."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    index = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes) and not name.startswith("._"):
                index.setdefault(name, []).append(os.path.join(folder, name))
    return index


def split_of_path(path, root, keywords):
    """The split whose keyword occurs in ``path``'s folders below ``root``, or ``None``.

    Parameters
    ----------
    keywords : dict
        ``{split: (keyword, ...)}``, e.g. ``{"valid": ("dev", "val")}``; matched
        case-insensitively against each folder name, the deepest folder first.
    """
    relative = os.path.relpath(os.path.dirname(path), root)
    for folder in reversed(relative.lower().split(os.sep)):
        for split, words in keywords.items():
            if any(word in folder for word in words):
                return split
    return None


# ----------------------------------------------------------------------------- AudioBench

def load_audiobench_test(path):
    """An AudioBench test set saved with ``datasets`` (``datasets.load_from_disk``).

    Raises
    ------
    PrepareError
        Missing folder, ``datasets`` not installed, or a folder it cannot load.
    """
    require_folder(path, "AudioBench test set folder")
    try:
        import datasets
    except ImportError as error:
        raise PrepareError("--audiobench_test needs the `datasets` package: "
                           "pip install datasets") from error
    try:
        dataset = datasets.load_from_disk(path)
    except Exception as error:
        raise PrepareError(f"cannot load the AudioBench test set {path} with "
                           f"datasets.load_from_disk: {_one_line(error)}") from error
    if isinstance(dataset, dict):  # a DatasetDict: one split is wanted
        names = list(dataset.keys())
        if len(names) != 1:
            raise PrepareError(f"{path} holds several splits ({', '.join(names)}); "
                               "point --audiobench_test at one of them")
        dataset = dataset[names[0]]
    missing = [c for c in ("context", "answer") if c not in dataset.column_names]
    if missing:
        raise PrepareError(f"{path} lacks the AudioBench column(s) {', '.join(missing)} "
                           f"(has: {', '.join(dataset.column_names)})")
    if isinstance(dataset.features.get("context"), datasets.Audio):
        # The encoded bytes, decoded here with soundfile: recent `datasets` releases
        # decode Audio columns through torchcodec, which this stack does not need.
        dataset = dataset.cast_column("context", datasets.Audio(decode=False))
    return dataset


def _text_of(value):
    """A text field that may be a plain string or a ``{"text": ...}`` dict."""
    if isinstance(value, dict):
        value = value.get("text", "")
    return "" if value is None else str(value).strip()


def _audio_of(context):
    """``(array, sampling_rate)`` of a ``context`` audio cell: decoded
    (``{"array", "sampling_rate"}``, possibly nested under ``"audio"``) or encoded
    (``{"bytes", "path"}``, an Audio column read with ``decode=False``)."""
    if isinstance(context, dict) and "array" not in context and "audio" in context:
        context = context["audio"]
    if isinstance(context, dict) and "array" not in context and (
            context.get("bytes") or context.get("path")):
        import soundfile

        source = io.BytesIO(context["bytes"]) if context.get("bytes") else context["path"]
        try:
            array, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            raise AudioReadError(f"cannot decode audio: {_one_line(error)}") from error
        return array.mean(axis=1), int(rate)
    if not isinstance(context, dict) or "array" not in context:
        raise AudioReadError("cannot read audio: context has no audio array")
    if context.get("sampling_rate") is None:
        raise AudioReadError("cannot read audio: context has no sampling_rate")
    array = np.asarray(context["array"], dtype=np.float32)
    if array.ndim > 1:
        array = array.mean(axis=-1 if array.shape[-1] < array.shape[0] else 0)
    return array, int(context["sampling_rate"])


def audiobench_entries(rows, save_folder, task, report, duration_filter,
                       instruction=None, answer=None, extra=None, split="test"):
    """Manifest entries of AudioBench rows; their audio is written as 16 kHz wavs.

    Parameters
    ----------
    rows : iterable of dict
        Rows with ``context`` (``{"array", "sampling_rate"}``), ``instruction`` and
        ``answer``, as in the AudioBench test sets.
    save_folder : str
        Audio goes to ``save_folder/wav/audiobench_test/ab_<index>.wav``.
    task : str
        Task name of the entries.
    report : SkipReport
        Receives unusable rows.
    duration_filter : DurationFilter
    instruction : callable, optional
        ``instruction(row_instruction) -> str``; default: the row's instruction.
    answer : callable, optional
        ``answer(row_answer) -> str``; default: the row's answer.
    extra : callable, optional
        ``extra(answer) -> dict`` of additional fields.

    Returns
    -------
    dict
        ``{id: entry}``.
    """
    from tqdm import tqdm

    folder = os.path.join(save_folder, "wav", AUDIOBENCH_FOLDER)
    entries = {}
    total = len(rows) if hasattr(rows, "__len__") else None
    for index, row in enumerate(tqdm(rows, total=total, desc="AudioBench test",
                                     unit="item", file=sys.stderr, mininterval=1.0)):
        item_id = f"ab_{index:06d}"
        row_answer = _text_of(row.get("answer"))
        row_instruction = _text_of(row.get("instruction"))
        if not row_answer:
            report.skip(split, item_id, "empty answer")
            continue
        try:
            signal, rate = _audio_of(row.get("context"))
        except AudioReadError as error:
            report.skip(split, item_id, str(error))
            continue
        signal = resample(signal, rate)
        duration, reason = checked_duration(len(signal) / SAMPLE_RATE, duration_filter)
        if reason:
            report.skip(split, item_id, reason)
            continue
        text = instruction(row_instruction) if instruction else row_instruction
        if not text:
            report.skip(split, item_id, "empty instruction")
            continue
        path = write_wav_atomic(os.path.join(folder, f"{item_id}.wav"), signal)
        final_answer = answer(row_answer) if answer else row_answer
        entries[item_id] = make_entry(path, duration, task, text, final_answer,
                                      source="audiobench",
                                      **(extra(row_answer) if extra else {}))
    return entries


def prepare_audiobench_test(args, task, report, **fields):
    """Load ``args.audiobench_test`` and return its entries (see :func:`audiobench_entries`)."""
    rows = load_audiobench_test(args.audiobench_test)
    logger.info("test: AudioBench test set %s (%d rows)", args.audiobench_test, len(rows))
    return audiobench_entries(rows, os.path.abspath(args.save_folder), task, report,
                              DurationFilter.from_args(args), **fields)
