"""AudioBench test sets in the corpus preparation scripts: reading a test set saved with
``datasets``' ``save_to_disk`` and writing its clips and manifest entries.
"""

import io
import logging
import os
import sys

import numpy as np

from mowe.data.prepare import (AUDIOBENCH_FOLDER, SAMPLE_RATE, AudioReadError, PrepareError,
                               make_entry, one_line, require_folder)
from mowe.data.prepare_audio import (DurationFilter, checked_duration, resample,
                                     write_wav_atomic)

logger = logging.getLogger(__name__)


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
                           f"datasets.load_from_disk: {one_line(error)}") from error
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
            raise AudioReadError(f"cannot decode audio: {one_line(error)}") from error
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
