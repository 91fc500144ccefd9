"""Shared machinery of the real-corpus preparation scripts (``egs/<corpus>/local/``).

Each script reads a corpus in its official layout and writes ``OUT/{train,valid,test}.json``
in the toolkit's manifest schema (see :mod:`mowe.data.manifest`) plus
``OUT/prepare_report.json``, which lists every skipped item with its reason. This module
holds what the scripts share: the common command-line options (``--shard`` among them),
atomic manifest and split writing, the skip report, and reading CSV and JSON files and
indexing a corpus's files. The audio work (durations and the duration filter, parallel
and resumable jobs, ffmpeg conversion, resampling, concatenation) is in
:mod:`mowe.data.prepare_audio`; the AudioBench test sets are in
:mod:`mowe.data.audiobench`.

Corpus knowledge (layouts, labels, ids) stays in the scripts.

Example
-------
>>> report = SkipReport()
>>> report.skip("train", "utt1", "missing audio: utt1.flac")
>>> report.summary("train", kept=3)
'train: kept 3, skipped 1 (missing audio: 1)'
"""

import argparse
import csv
import io
import json
import logging
import os
import random
import sys
from collections import Counter

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


def active_shard():
    """The ``(J, N)`` of ``--shard J/N`` in this run, or None (see :func:`activate_shard`)."""
    return _SHARD


def one_line(error):
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


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
        raise PrepareError(f"{what} {path} is not valid JSON: {one_line(error)}") from error


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
