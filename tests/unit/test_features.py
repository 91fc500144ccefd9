"""Precomputed base-encoder features (mowe/data/precomputed_features.py, recipes/extract_features.py): the
fingerprint, stale caches, the resumable job array, cache == live, and the skip."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile
import torch

from conftest import REPO, load_spec
from mowe.data.collate import SkipUnreadableClips
from mowe.data.precomputed_features import (FeatureCache, FeatureCacheError, cache_blockers, clip_key,
                           encoder_fingerprint, extract, open_cache, shard_marker)
from mowe.recipe.hparams import dataset

sys.path.insert(0, os.path.join(REPO, "recipes"))
import extract_features as features_entry  # noqa: E402  (recipes/extract_features.py)

INSTRUCTIONS = {"asr": "Transcribe the speech.", "er": "What emotion is expressed?"}


def write_corpus(folder, count=5, seed=0):
    """Clips of different lengths and their manifest; returns the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i in range(count):
        samples = int(rng.integers(3000, 14000))
        path = folder / f"clip{i}.wav"
        soundfile.write(path, (rng.standard_normal(samples) * 0.1).astype("float32"), 16000)
        task = ("asr", "er")[i % 2]
        entries[f"utt{i}"] = {"wav": str(path), "duration": samples / 16000, "task": task,
                              "instruction": INSTRUCTIONS[task],
                              "answer": ["hello world", "joy"][i % 2]}
    manifest = folder / "data.json"
    manifest.write_text(json.dumps(entries))
    return str(manifest)


def frozen_model(tiny_models, **extra):
    settings = dict(freeze_base_encoder=True, lora_dropout=0.0, weak_encoder_dropout=0.0)
    settings.update(extra)
    torch.manual_seed(0)
    return load_spec(tiny_models, **settings)["model"]


def batches(model, manifest, cache=None, batch_size=3):
    from speechbrain.dataio.dataloader import make_dataloader

    data = dataset(manifest, trim_seconds=model.max_audio_seconds, feature_cache=cache)
    data = data.filtered_sorted(sort_key="duration")
    return list(make_dataloader(data, batch_size=batch_size, collate_fn=SkipUnreadableClips()))


def test_fingerprint_follows_weights_and_settings(tiny_models):
    model = frozen_model(tiny_models)
    reference, _ = encoder_fingerprint(model)
    assert encoder_fingerprint(frozen_model(tiny_models))[0] == reference  # deterministic
    assert encoder_fingerprint(frozen_model(tiny_models, whisper_pad_to_30s=True))[0] \
        != reference
    assert encoder_fingerprint(frozen_model(tiny_models, max_audio_seconds=10.0))[0] \
        != reference
    with torch.no_grad():
        model.base_encoder.encoder.layers[0].fc1.weight[0, 0] += 1e-3
    assert encoder_fingerprint(model)[0] != reference
    # the weak encoders, adapter and LLM are not part of it: they are trained
    assert encoder_fingerprint(frozen_model(tiny_models, num_weak_encoders=2))[0] == reference


def test_clip_key_follows_the_audio_the_model_sees():
    wav = torch.randn(48000)
    assert clip_key(wav, None) == clip_key(wav.clone(), None)
    changed = wav.clone()
    changed[100] += 1e-4
    assert clip_key(changed, None) != clip_key(wav, None)
    # past the model's window the audio is never seen: same key
    longer = torch.cat([wav, torch.randn(16000)])
    assert clip_key(longer, 3.0) == clip_key(wav, 3.0)
    assert clip_key(longer, None) != clip_key(wav, None)


def test_blockers_trainable_augmented_random(tiny_models):
    assert cache_blockers(frozen_model(tiny_models).base_encoder) == []
    trainable = load_spec(tiny_models)["model"].base_encoder  # the spec's default
    assert "trainable" in " ".join(cache_blockers(trainable))
    augmented = frozen_model(tiny_models, yaml_overrides="spec_augment: !new:mowe.models.encoders."
                             "SpecAugment {time_masks: 2, freq_masks: 0}\n")
    assert "augmentation" in " ".join(cache_blockers(augmented.base_encoder))
    noisy = frozen_model(tiny_models)
    noisy.base_encoder.encoder.config.dropout = 0.1
    assert "random in training" in " ".join(cache_blockers(noisy.base_encoder))


def test_stale_cache_is_refused(tiny_models, tmp_path):
    manifest = write_corpus(tmp_path / "audio")
    model = frozen_model(tiny_models)
    cache = FeatureCache(str(tmp_path / "features"), model)
    extract(model, cache, [dataset(manifest)], progress=False)
    assert open_cache(str(tmp_path / "features"), model).folder == cache.folder
    stamp = json.loads(open(cache.stamp).read())
    stamp["fingerprint"] = "0" * 64  # as if written by another encoder into this folder
    open(cache.stamp, "w").write(json.dumps(stamp))
    with pytest.raises(FeatureCacheError, match="refusing stale features"):
        open_cache(str(tmp_path / "features"), model)
    # another encoder looks in its own folder: none there, it encodes live (logged)
    other = frozen_model(tiny_models, whisper_pad_to_30s=True)
    assert open_cache(str(tmp_path / "features"), other) is None
    # a trainable encoder never reads a cache
    assert open_cache(str(tmp_path / "features"), load_spec(tiny_models)["model"]) is None


def test_job_array_is_resumable(tiny_models, tmp_path):
    manifest = write_corpus(tmp_path / "audio", count=6)
    model = frozen_model(tiny_models)
    cache = FeatureCache(str(tmp_path / "features"), model)
    data = [dataset(manifest)]
    first = shard_marker(cache, [manifest], (1, 2))
    counts = extract(model, cache, data, (1, 2), marker=first, progress=False)
    assert counts == {"encoded": 3, "cached": 0, "unreadable": 0}
    assert os.path.isfile(first)
    again = extract(model, cache, data, (1, 2), marker=first, progress=False)
    assert again.get("skipped_shard") == 1
    second = shard_marker(cache, [manifest], (2, 2))
    assert extract(model, cache, data, (2, 2), marker=second, progress=False)["encoded"] == 3
    # an interrupted shard 2: its marker never written, one of its clips (utt1) missing
    os.remove(second)
    files = [n for _, _, names in os.walk(cache.folder) for n in names if n.endswith(".pt")]
    assert len(files) == 6
    os.remove(cache.path(clip_key(data[0][data[0].data_ids.index("utt1")]["sig"],
                                  model.max_audio_seconds)))
    redo = [extract(model, cache, data, shard, marker=shard_marker(cache, [manifest], shard),
                    progress=False) for shard in ((1, 2), (2, 2))]
    assert redo[0].get("skipped_shard") == 1
    assert redo[1] == {"encoded": 1, "cached": 2, "unreadable": 0}


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_cache_equals_live(tiny_models, tmp_path, pad_to_30s):
    manifest = write_corpus(tmp_path / "audio", count=5)
    model = frozen_model(tiny_models, whisper_pad_to_30s=pad_to_30s)
    cache = FeatureCache(str(tmp_path / "features"), model)
    extract(model, cache, [dataset(manifest)], batch_size=2, progress=False)
    cache = open_cache(str(tmp_path / "features"), model)
    live, cached = batches(model, manifest), batches(model, manifest, cache)
    assert all(entry is not None for batch in cached for entry in batch.base_feats)
    # a miss: one clip's file removed -> that clip is encoded live and counted
    key = clip_key(cached[0].sig.data[0, :int(round(float(cached[0].sig.lengths[0])
                                                     * cached[0].sig.data.shape[1]))], None)
    os.remove(cache.path(key))
    cached = batches(model, manifest, cache)
    assert sum(entry is None for batch in cached for entry in batch.base_feats) == 1
    for mode in ("eval", "train"):
        getattr(model, mode)()
        for a, b in zip(live, cached):
            torch.manual_seed(1)
            expected = model(*a.sig, a.instruction, a.answer)
            torch.manual_seed(1)
            got = model(*b.sig, b.instruction, b.answer, base_feats=b.base_feats)
            assert got.next_token_loss.item() == pytest.approx(
                expected.next_token_loss.item(), rel=1e-5, abs=1e-6), mode
            assert got.mowe_loss.item() == pytest.approx(expected.mowe_loss.item(),
                                                         rel=1e-5, abs=1e-6)
            assert torch.equal(got.selected, expected.selected)
    model.eval()
    for a, b in zip(live, cached):
        assert model.generate(*a.sig, a.instruction, max_new_tokens=6) == \
            model.generate(*b.sig, b.instruction, max_new_tokens=6, base_feats=b.base_feats)
    assert model.feature_cache_misses >= 1 and model.feature_cache_hits >= 4


def recipe_args(tiny_pretrained, data, tmp_path, *extra):
    return [os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
            f"--output_folder={tmp_path / 'exp'}", f"--data_folder={data}",
            f"--pretrained_dir={tiny_pretrained}", "--batch_size=2",
            f"--feature_cache={tmp_path / 'features'}", *extra]


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    from mowe.utils.tiny_models import make_tiny_pretrained_dir

    return make_tiny_pretrained_dir(tmp_path_factory.mktemp("pretrained"))


def test_entry_point_writes_features_or_says_why_not(tiny_pretrained, tmp_path, caplog):
    import shutil

    data = tmp_path / "data"
    for split, seed in (("train", 1), ("valid", 2), ("test", 3)):
        shutil.copy(write_corpus(tmp_path / split, count=3, seed=seed), tmp_path / "x.json")
        data.mkdir(exist_ok=True)
        os.replace(tmp_path / "x.json", data / f"{split}.json")
    caplog.set_level("INFO")
    args = recipe_args(tiny_pretrained, data, tmp_path, "--shard", "1/1")
    assert features_entry.main(list(args)) == 0
    folders = os.listdir(tmp_path / "features")
    assert len(folders) == 1
    clips = [n for _, _, names in os.walk(tmp_path / "features") for n in names
             if n.endswith(".pt")]
    assert len(clips) == 9
    assert "encoded 9 clips" in caplog.text
    # the stage driver passes training's --precision=bf16 with a GPU: features stay in
    # the encoder's own precision (the same cache), and the log says so
    assert features_entry.main(list(args) + ["--precision=bf16"]) == 0
    assert "already done" in caplog.text
    assert "--precision=bf16 applies to training only" in caplog.text
    caplog.clear()
    trainable = recipe_args(tiny_pretrained, data, tmp_path, "--spec={freeze_base_encoder: False}")
    assert features_entry.main(trainable) == 0
    assert "features: skipped" in caplog.text and "trainable" in caplog.text
    caplog.clear()
    augmented = recipe_args(tiny_pretrained, data, tmp_path,
                            "--spec={spec_augment: {time_masks: 2, freq_masks: 1}}")
    assert features_entry.main(augmented) == 0
    assert "features: skipped" in caplog.text and "augmentation" in caplog.text
    assert len(os.listdir(tmp_path / "features")) == 1  # nothing written by the skips


def test_skip_is_decided_from_the_yaml_before_loading_models(tmp_path):
    """The paper recipes' encoders are trainable: the step says so without building an
    (8B) LLM; a frozen synthetic encoder needs the built model's check."""
    paper = [os.path.join(REPO, "recipes", "conf", "paper", "train.yaml"),
             f"--output_folder={tmp_path}", f"--data_folder={tmp_path}",
             f"--pretrained_dir={tmp_path}"]
    assert "trainable" in " ".join(features_entry.declared_blockers(paper))
    synthetic = [os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml"),
                 f"--output_folder={tmp_path}", f"--data_folder={tmp_path}",
                 f"--pretrained_dir={tmp_path}"]
    assert features_entry.declared_blockers(synthetic) == []
    masked = synthetic + ["--spec={spec_augment: {time_masks: 2}}"]
    assert "augmentation" in " ".join(features_entry.declared_blockers(masked))
