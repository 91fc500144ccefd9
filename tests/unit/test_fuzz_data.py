"""Property-based fuzzing of the data path (issue 17): manifests with random missing or
ill-typed fields and random audio bytes (truncated headers, NaN/inf samples, odd rates
and channel counts, zero length, garbage, missing files).

Whatever is generated, ``recipes/validate_data.py`` either keeps an entry — which then
loads and trains for one step with finite tensors — or skips it with a counted reason;
and the data loader on the raw manifest either refuses it with a ManifestError or
yields only finite audio, counting every clip it leaves out. Never a traceback."""

import importlib.util
import io
import json
import os
import tempfile

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import drop_unimportable_lazy_modules, load_spec
from conftest import make_brain
from mowe.data import ManifestError, make_dataset
from mowe.data.collate import SkipUnreadableClips

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = importlib.util.spec_from_file_location(
    "validate_data", os.path.join(REPO, "recipes", "validate_data.py"))
validate_data = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(validate_data)


def wav_bytes(samples, rate, subtype):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


@st.composite
def audio_files(draw):
    """(file bytes or None for a missing file, seconds of usable audio or None)."""
    kind = draw(st.sampled_from(["good", "odd_rate", "channels", "nan", "inf", "empty",
                                 "truncated_header", "truncated_data", "garbage",
                                 "missing"]))
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100])) \
        if kind == "odd_rate" else 16000
    frames = draw(st.integers(min_value=1600, max_value=12000))
    channels = draw(st.integers(min_value=2, max_value=4)) if kind == "channels" else 1
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    samples = (0.1 * rng.standard_normal((frames, channels))).astype("float32")
    if kind in ("nan", "inf"):
        samples[draw(st.integers(0, frames - 1)), 0] = np.nan if kind == "nan" else np.inf
        return wav_bytes(samples, rate, "FLOAT"), None
    if kind == "empty":
        return wav_bytes(samples[:0], rate, "PCM_16"), None
    if kind == "missing":
        return None, None
    if kind == "garbage":
        return draw(st.binary(min_size=0, max_size=200)), None
    data = wav_bytes(samples, rate, draw(st.sampled_from(["PCM_16", "FLOAT"])))
    if kind == "truncated_header":
        return data[:draw(st.integers(0, 43))], None
    if kind == "truncated_data":
        return data[:draw(st.integers(44, len(data) - 1))], None
    return data, frames / rate


FIELD_VALUES = {
    "duration": st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                          st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
                          st.lists(st.integers(), max_size=2)),
    "task": st.one_of(st.none(), st.integers(), st.sampled_from(["asr", "er", "dance", ""])),
    "instruction": st.one_of(st.none(), st.integers(), st.text(max_size=12),
                             st.lists(st.text(max_size=3), max_size=2)),
    "answer": st.one_of(st.none(), st.integers(), st.text(max_size=12), st.booleans()),
    "start": st.one_of(st.none(), st.floats(-1, 2), st.text(max_size=3)),
}


@st.composite
def manifests(draw):
    """A list of (id, entry template, audio) with random field damage."""
    items = []
    for index in range(draw(st.integers(min_value=1, max_value=4))):
        audio = draw(audio_files())
        entry = {"duration": "<audio>", "task": draw(st.sampled_from(["asr", "er", "aqa"])),
                 "instruction": "Describe it.", "answer": "some answer"}
        for field in draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=2)):
            entry[field] = draw(FIELD_VALUES[field])
        for field in draw(st.sets(st.sampled_from(["duration", "task", "instruction",
                                                   "answer", "wav"]), max_size=1)):
            entry.pop(field, None)
            entry[f"dropped_{field}"] = True
        items.append((f"utt{index}", entry, audio))
    return items


def write_manifest(folder, items):
    entries = {}
    for utt, template, (data, seconds) in items:
        entry = {k: v for k, v in template.items() if not k.startswith("dropped_")}
        path = os.path.join(folder, f"{utt}.wav")
        if data is not None:
            with open(path, "wb") as handle:
                handle.write(data)
        if "dropped_wav" not in template:
            entry["wav"] = path
        if entry.get("duration") == "<audio>":
            entry["duration"] = seconds if seconds is not None else 0.5
        entries[utt] = entry
    manifest = os.path.join(folder, "train.json")
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(entries, handle)
    return manifest, entries


@pytest.fixture(scope="module")
def brain(tiny_models, tmp_path_factory):
    """A tiny model's Brain, warmed up by one step so that every module a step imports
    is imported before Hypothesis scans them."""
    torch.manual_seed(0)
    brain = make_brain(load_spec(tiny_models)["model"])
    brain.init_optimizers()
    folder = tmp_path_factory.mktemp("warmup")
    soundfile.write(folder / "a.wav", np.zeros(8000, dtype="float32"), 16000)
    (folder / "m.json").write_text(json.dumps({"a": {
        "wav": str(folder / "a.wav"), "duration": 0.5, "task": "asr",
        "instruction": "Say.", "answer": "hi"}}))
    dataset = make_dataset(str(folder / "m.json"))
    brain.step = 1
    brain.fit_batch(SkipUnreadableClips()([dataset[0]]))
    drop_unimportable_lazy_modules()
    return brain


def assert_finite_batch(batch):
    wavs, _ = batch.sig
    assert bool(torch.isfinite(wavs).all())


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=manifests())
def test_validation_keeps_usable_entries_and_counts_every_skip(brain, capsys, items):
    with tempfile.TemporaryDirectory() as folder:
        manifest, entries = write_manifest(folder, items)
        out = os.path.join(folder, "clean")
        code = validate_data.main(["--manifests", manifest, "--out_dir", out])
        output = "".join(capsys.readouterr())
        assert code in (0, 1)
        if code == 1:
            assert "error: no usable clip" in output
            return
        report = json.load(open(os.path.join(out, "validation_report.json")))["train.json"]
        kept = json.load(open(os.path.join(out, "train.json")))
        assert report["kept"] == len(kept)
        assert report["kept"] + report["skipped"] == len(entries)
        assert set(kept) | set(report["reasons"]) == set(entries)
        assert all(report["reasons"].values())
        collate = SkipUnreadableClips()
        dataset = make_dataset(os.path.join(out, "train.json"))
        batch = collate([dataset[i] for i in range(len(dataset))])
        assert collate.skipped == {} and batch is not None
        assert_finite_batch(batch)
        brain.step = 1
        loss = brain.fit_batch(batch)  # one training step on what validation kept
        assert torch.isfinite(loss)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=manifests())
def test_loader_on_raw_manifests_refuses_or_counts(items):
    with tempfile.TemporaryDirectory() as folder:
        manifest, entries = write_manifest(folder, items)
        try:
            dataset = make_dataset(manifest)
        except ManifestError as error:
            assert str(error).startswith(f"manifest {manifest}: ")
            return
        collate = SkipUnreadableClips()
        batch = collate([dataset[i] for i in range(len(dataset))])
        loaded = [] if batch is None else list(batch.id)
        assert sorted(loaded + list(collate.skipped)) == sorted(entries)
        if batch is not None:
            assert_finite_batch(batch)
