"""Manifests in the toolkit's schema and the datasets built on them.

A manifest is SpeechBrain JSON: ``{id: {"wav", "duration", "task", "instruction",
"answer", ["start", "stop"], ...}}``. ``{data_root}``-style variables in strings
are replaced as in SpeechBrain.

Example
-------
>>> import json, tempfile
>>> path = tempfile.mktemp(suffix=".json")
>>> json.dump({"u1": {"wav": "a.wav", "duration": 1.0, "task": "asr",
...                   "instruction": "Transcribe.", "answer": "hi"}}, open(path, "w"))
>>> list(read_manifest(path))
['u1']
"""

import json
import os

REQUIRED_FIELDS = ("wav", "duration", "task", "instruction", "answer")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says which file and entries."""


def read_manifest(path):
    """Load and validate a manifest; return the ``{id: entry}`` dict.

    Raises
    ------
    ManifestError
        Missing file, invalid JSON, or entries lacking required fields.
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except json.JSONDecodeError as error:
        raise ManifestError(f"manifest {path} is not valid JSON: {error}") from error
    if not isinstance(entries, dict) or not entries:
        raise ManifestError(f"manifest {path} must be a non-empty JSON object of entries")
    problems = []
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            problems.append(f"{key}: not an object")
            continue
        missing = [field for field in REQUIRED_FIELDS if field not in entry]
        if missing:
            problems.append(f"{key}: missing {', '.join(missing)}")
    if problems:
        shown = "; ".join(problems[:5])
        raise ManifestError(f"manifest {path}: {len(problems)} bad entries ({shown})")
    return entries


def make_dataset(path, replacements=None, sample_rate=16000, trim_seconds=None):
    """A SpeechBrain ``DynamicItemDataset`` giving ``id, sig, task, instruction, answer``.

    Arguments
    ---------
    path : str
        Manifest file.
    replacements : dict, optional
        ``{"data_root": "/corpus"}`` replaces ``{data_root}`` in string fields.
    sample_rate : int
        Audio is resampled to this rate.
    trim_seconds : float, optional
        Read at most this many seconds of each clip (from its ``start``).
    """
    import speechbrain as sb

    from mowe.data.audio import load_audio

    read_manifest(path)
    data = sb.dataio.dataio.load_data_json(path, replacements=replacements or {})
    # "start"/"stop" are optional: give every entry the keys so the pipeline can take them.
    for entry in data.values():
        entry.setdefault("start", None)
        entry.setdefault("stop", None)
    dataset = sb.dataio.dataset.DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav, start=None, stop=None):
        if trim_seconds:
            end = (start or 0.0) + trim_seconds
            stop = end if stop is None else min(stop, end)
        return load_audio(wav, sample_rate, start, stop)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.set_output_keys(["id", "sig", "task", "instruction", "answer"])
    return dataset
