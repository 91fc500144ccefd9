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
import math
import os

from mowe.data.tasks import TASKS

REQUIRED_FIELDS = ("wav", "duration", "task", "instruction", "answer")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says which file and entries."""


def _is_number(value):
    # bool is an int subclass in Python; a JSON true/false is no duration
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def entry_problems(entry, tasks=TASKS):
    """What is wrong with one manifest entry, as ``"field: reason"`` strings.

    Checks presence and type of every field training and decoding read: ``wav`` a
    non-empty string, ``duration`` a finite positive number, ``task`` one of ``tasks``
    (default :data:`mowe.data.tasks.TASKS`; a recipe with tasks of its own passes them), ``instruction`` and ``answer`` non-empty strings,
    optional ``start``/``stop`` numbers with ``0 <= start < stop``.

    Example
    -------
    >>> entry_problems({"wav": "a.wav", "duration": "abc", "task": "dance",
    ...                 "instruction": "Go.", "answer": 42})
    ['answer: not a string (42)', 'duration: not a number ("abc")', 'task: unknown task "dance" (known: asr, er, aqa, sqa, ac)']
    """
    if not isinstance(entry, dict):
        return [f"entry: not an object ({json.dumps(entry)[:40]})"]
    missing = [field for field in REQUIRED_FIELDS if field not in entry]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    shown = lambda value: json.dumps(value)[:40]  # noqa: E731
    for field in ("wav", "instruction", "answer"):
        if field not in entry:
            continue
        value = entry[field]
        if not isinstance(value, str):
            problems.append(f"{field}: not a string ({shown(value)})")
        elif not value.strip():
            problems.append(f"{field}: empty")
    if "duration" in entry:
        value = entry["duration"]
        if not _is_number(value):
            problems.append(f"duration: not a number ({shown(value)})")
        elif not math.isfinite(value) or value <= 0:
            problems.append(f"duration: must be a positive number of seconds, not {value}")
    if "task" in entry and entry["task"] not in tasks:
        problems.append(f"task: unknown task {shown(entry['task'])} "
                        f"(known: {', '.join(tasks)})")
    bounds = {}
    for field in ("start", "stop"):
        value = entry.get(field)
        if value is None:
            continue
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            problems.append(f"{field}: must be a non-negative number of seconds, "
                            f"not {shown(value)}")
        else:
            bounds[field] = value
    if len(bounds) == 2 and bounds["stop"] <= bounds["start"]:
        problems.append(f"stop: {bounds['stop']} is not after start {bounds['start']}")
    return problems


def load_manifest_entries(path, tasks=TASKS):
    """Entries of a manifest file, checked one by one.

    Returns
    -------
    entries : dict
        ``{id: entry}`` of the usable entries, in file order (of duplicated ids, the
        first occurrence).
    problems : dict
        ``{label: reason}`` for every entry left out; ``label`` is the id, or
        ``"ID (occurrence N)"`` for a repeated id, so no entry is dropped unreported.

    Raises
    ------
    ManifestError
        Missing or unreadable file, invalid JSON, or not a non-empty JSON object.
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    pairs_of_top = []

    def keep_pairs(pairs):
        # json keeps the last of duplicated keys silently; keep every pair to see them
        pairs_of_top.append(pairs)
        return dict(pairs)

    try:
        with open(path, encoding="utf-8") as handle:
            top = json.load(handle, object_pairs_hook=keep_pairs)
    except UnicodeDecodeError as error:
        raise ManifestError(f"manifest {path} is not UTF-8 text: {error}") from error
    except json.JSONDecodeError as error:
        raise ManifestError(f"manifest {path} is not valid JSON: {error}") from error
    if not isinstance(top, dict) or not top:
        raise ManifestError(f"manifest {path} must be a non-empty JSON object of entries")
    entries, problems, seen = {}, {}, {}
    for key, entry in pairs_of_top[-1]:  # the outermost object is parsed last
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            problems[f"{key} (occurrence {seen[key]})"] = (
                "duplicate id: an earlier entry has the same id (kept the first)")
            continue
        reasons = entry_problems(entry, tasks)
        if reasons:
            problems[key] = "; ".join(reasons)
        else:
            entries[key] = entry
    return entries, problems


def read_manifest(path, tasks=TASKS):
    """Load and validate a manifest; return the ``{id: entry}`` dict.

    Every entry must pass :func:`entry_problems` and ids must be unique; run
    ``recipes/validate_data.py`` to write a manifest holding only the usable entries.

    Raises
    ------
    ManifestError
        Missing file, invalid JSON, duplicate ids, or entries with missing or ill-typed
        fields (the first few are named with their field).
    """
    entries, problems = load_manifest_entries(path, tasks)
    if problems:
        shown = "; ".join(f"{key}: {reason}" for key, reason in list(problems.items())[:5])
        raise ManifestError(f"manifest {path}: {len(problems)} bad entries ({shown}); "
                            "recipes/validate_data.py writes a cleaned copy")
    return entries


def make_dataset(path, replacements=None, sample_rate=16000, trim_seconds=None, tasks=TASKS,
                 feature_cache=None):
    """A SpeechBrain ``DynamicItemDataset`` giving ``id, sig, task, instruction, answer``.

    ``sig`` is the waveform, or the :class:`~mowe.data.AudioError` of a clip that cannot
    be loaded; batch with :class:`mowe.data.collate.SkipUnreadableClips`, which leaves
    such clips out and counts them.

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
    tasks : tuple of str
        The task names entries may use (default: the toolkit's five).
    feature_cache : mowe.data.precomputed_features.FeatureCache, optional
        Also give ``base_feats``: the clip's precomputed base-encoder features
        (:class:`mowe.data.precomputed_features.CachedFeatures`), or None when the cache lacks the clip
        (the model then encodes it live and counts the miss).
    """
    import speechbrain as sb

    from mowe.data.audio import AudioError, load_audio

    read_manifest(path, tasks)
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
        # A clip that cannot be used travels as its error: the collate function
        # (mowe.data.collate.SkipUnreadableClips) leaves it out and counts it.
        try:
            return load_audio(wav, sample_rate, start, stop)
        except AudioError as error:
            return error

    dataset.add_dynamic_item(audio_pipeline)
    keys = ["id", "sig", "task", "instruction", "answer"]
    if feature_cache is not None:
        @sb.utils.data_pipeline.takes("sig")
        @sb.utils.data_pipeline.provides("base_feats")
        def feature_pipeline(sig):
            return None if isinstance(sig, AudioError) else feature_cache.lookup(sig)

        dataset.add_dynamic_item(feature_pipeline)
        keys.append("base_feats")
    dataset.set_output_keys(keys)
    return dataset
