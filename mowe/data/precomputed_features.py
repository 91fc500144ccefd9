"""Precomputed base-encoder features: computed once, read back in training and decoding.

When the base encoder is frozen and nothing random touches its input (no SpecAugment,
no other augmentation, no dropout or layer drop inside it), its output for a clip is a
fixed function of the clip's audio. The recipes' "features" step
(``recipes/features.py``, a job array) then encodes every clip of the train, valid and
test manifests once, and training and decoding read the features back instead of
running the encoder on every clip of every epoch, for every system of a sweep. The weak
encoders still run on the raw audio (they are trained).

Layout: ``<root>/<fingerprint[:16]>/`` holds ``fingerprint.json`` (the full fingerprint
and what went into it) and one ``<clip key>.pt`` per clip, a dict ``{"feats": [T, D],
"length": valid frames}`` read with ``torch.load(weights_only=True)``:

* the **fingerprint** hashes the encoder's state dict (weights and buffers such as the
  mel filters), the settings that change its outputs (30 s padding, hop, FFT size,
  sample rate, the model's ``max_audio_seconds`` window, the encoder's Hugging Face
  config) and the library versions of the code path (transformers, speechbrain): another
  encoder, or the same one with other settings, gets another folder;
* the **clip key** hashes the waveform the model would see (after reading, resampling,
  ``start``/``stop`` and the ``max_audio_seconds`` cut): changed audio is a miss, never
  stale features.

A folder whose ``fingerprint.json`` differs from the encoder's fingerprint is refused
(:class:`FeatureCacheError`). A clip without cached features (a miss) is encoded live by
:class:`mowe.models.audio_llm.AudioLLM`, which counts it and warns; nothing is recomputed silently.

Example
-------
>>> import torch
>>> key = clip_key(torch.zeros(16000), None)
>>> key == clip_key(torch.zeros(16000), None), key == clip_key(torch.ones(16000), None)
(True, False)
"""

import hashlib
import json
import logging
import os

import torch
import torch.nn as nn

from mowe.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAMPLE_RATE = 16000
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class FeatureCacheError(RuntimeError):
    """A feature cache that must not be used (fingerprint mismatch, unreadable file)."""


class CachedFeatures:
    """One clip's cached base-encoder output, as it travels in a batch.

    Attributes
    ----------
    feats : torch.Tensor
        ``[T, D]`` (T = valid frames, or every frame for a fixed-length encoder).
    length : int
        Valid frames.
    """

    def __init__(self, feats, length):
        self.feats = feats
        self.length = int(length)

    def __repr__(self):
        return f"CachedFeatures({tuple(self.feats.shape)}, length={self.length})"


# ----------------------------------------------------------------- cacheability
_STOCHASTIC_ATTRS = ("dropout", "attention_dropout", "activation_dropout", "layerdrop",
                     "hidden_dropout", "feat_proj_dropout")
# Hugging Face's SpecAugment-style masking of SSL models (only with apply_spec_augment)
_MASK_ATTRS = ("mask_time_prob", "mask_feature_prob")


def cache_blockers(encoder):
    """Why ``encoder``'s outputs cannot be cached (empty list: they can).

    An encoder is cacheable when it is frozen, no augmentation touches its input (a
    :class:`mowe.models.encoders.SpecAugment` without masks is the identity and is allowed), and
    it holds no dropout, layer drop or time masking that would make its training-mode
    output random.

    Example
    -------
    >>> from mowe.models.encoders import SmallEncoder
    >>> cache_blockers(SmallEncoder(d_model=16, num_layers=1, num_heads=2))[0]
    'the base encoder is trainable (freeze_base_encoder: False)'
    >>> cache_blockers(SmallEncoder(d_model=16, num_layers=1, num_heads=2, dropout=0.0,
    ...                             freeze=True))
    []
    """
    reasons = []
    if not getattr(encoder, "freeze", False):
        reasons.append("the base encoder is trainable (freeze_base_encoder: False)")
    for module in getattr(encoder, "augment", None) or []:
        masks = getattr(module, "masks", None)
        if masks is None or len(masks):
            reasons.append(f"augmentation touches its input ({type(module).__name__}: "
                           "spec_augment or another augment module)")
    stochastic = set()
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            stochastic.add(f"{name or 'encoder'} (Dropout p={module.p})")
        config = getattr(module, "config", None)
        for holder in (module, config):
            attrs = _STOCHASTIC_ATTRS
            if holder is config and getattr(config, "apply_spec_augment", False):
                attrs += _MASK_ATTRS
            for attr in attrs:
                value = getattr(holder, attr, None) if holder is not None else None
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and value > 0:
                    stochastic.add(f"{attr}={value}")
    if stochastic:
        shown = ", ".join(sorted(stochastic)[:3])
        reasons.append(f"it is random in training ({shown})")
    return reasons


# ------------------------------------------------------------------ fingerprints
def _scalar_settings(obj, skip=("source", "save_path", "training", "freeze")):
    settings = {}
    for name, value in sorted(vars(obj).items()):
        if name.lstrip("_") in skip or name.startswith("__"):
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            settings[name.lstrip("_")] = value
    return settings


def encoder_settings(model):
    """The settings besides the weights that change the base encoder's output."""
    import speechbrain
    import transformers

    encoder = model.base_encoder
    settings = {"format": FORMAT_VERSION, "class": type(encoder).__qualname__,
                "max_audio_seconds": getattr(model, "max_audio_seconds", None),
                "fixed_length": bool(getattr(encoder, "fixed_length", False)),
                "encoder": _scalar_settings(encoder),
                "transformers": transformers.__version__,
                "speechbrain": speechbrain.__version__}
    lobe = getattr(encoder, "lobe", None)
    if lobe is not None:
        settings["lobe"] = _scalar_settings(lobe)
    config = getattr(getattr(encoder, "encoder", None), "config", None) or \
        getattr(getattr(lobe, "model", None), "config", None)
    if config is not None and hasattr(config, "to_dict"):
        settings["config"] = {key: value for key, value in sorted(config.to_dict().items())
                              if key != "transformers_version"
                              and (value is None or isinstance(value, (bool, int, float,
                                                                       str, list)))}
    return settings


def weights_digest(module):
    """SHA-256 of a module's state dict (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_fingerprint(model):
    """``(fingerprint, description)`` of ``model``'s base encoder: SHA-256 over its
    weights and :func:`encoder_settings`."""
    description = {"weights_sha256": weights_digest(model.base_encoder),
                   "settings": encoder_settings(model)}
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), description


def clip_key(sig, max_audio_seconds, sample_rate=SAMPLE_RATE):
    """Hash of the samples the model sees of a clip (cut to ``max_audio_seconds``)."""
    if max_audio_seconds:
        sig = sig[: int(round(float(max_audio_seconds) * sample_rate))]
    data = sig.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.blake2b(data.tobytes() + str(data.shape).encode(),
                           digest_size=20).hexdigest()


# ------------------------------------------------------------------------ cache
class FeatureCache:
    """The cache folder of one base encoder under ``root``.

    Arguments
    ---------
    root : str
        Feature root (e.g. ``data/<corpus>/features``).
    model : mowe.models.audio_llm.AudioLLM
        The model whose base encoder the features belong to.
    """

    def __init__(self, root, model):
        self.root = root
        self.fingerprint, self.description = encoder_fingerprint(model)
        self.folder = os.path.join(root, self.fingerprint[:16])
        self.max_audio_seconds = getattr(model, "max_audio_seconds", None)
        self.fixed_length = bool(getattr(model.base_encoder, "fixed_length", False))
        self.dtype = None
        self.hits = self.misses = 0

    @property
    def stamp(self):
        return os.path.join(self.folder, "fingerprint.json")

    def exists(self):
        return os.path.isfile(self.stamp)

    def check(self):
        """Refuse a folder written for another encoder (raises :class:`FeatureCacheError`);
        returns the stored features' dtype name."""
        try:
            with open(self.stamp, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise FeatureCacheError(f"feature cache {self.folder}: cannot read "
                                    f"{self.stamp}: {error}") from error
        if stored.get("fingerprint") != self.fingerprint:
            raise FeatureCacheError(
                f"feature cache {self.folder} was written for another base encoder or other "
                f"settings (fingerprint {str(stored.get('fingerprint'))[:16]}..., this model "
                f"{self.fingerprint[:16]}...): refusing stale features; remove the folder "
                "and rerun the features step")
        self.dtype = stored.get("dtype", "float32")
        return self.dtype

    def create(self, dtype="float32"):
        """Make the folder and its ``fingerprint.json`` (or check an existing one)."""
        if dtype not in DTYPES:
            raise ValueError(f"feature dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        os.makedirs(self.folder, exist_ok=True)
        if self.exists():
            stored = self.check()
            if stored != dtype:
                raise FeatureCacheError(f"feature cache {self.folder} holds {stored} "
                                        f"features; asked for {dtype} (remove it to change)")
            return
        write_text_atomic(self.stamp, json.dumps(
            {"fingerprint": self.fingerprint, "dtype": dtype, **self.description},
            indent=2, sort_keys=True) + "\n")
        self.dtype = dtype

    def path(self, key):
        return os.path.join(self.folder, key[:2], key + ".pt")

    def has(self, key):
        return os.path.isfile(self.path(key))

    def write(self, key, feats, length):
        """Save one clip's features atomically (``.partial`` then rename)."""
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        torch.save({"feats": feats.detach().to("cpu", DTYPES[self.dtype]).clone(),
                    "length": torch.tensor(int(length))}, partial)
        os.replace(partial, path)

    def read(self, key):
        """A clip's :class:`CachedFeatures` (float32), or None when it is not cached."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            return CachedFeatures(entry["feats"].float(), int(entry["length"]))
        except Exception as error:  # a damaged file is a miss, said out loud
            logger.warning("feature cache: unreadable %s (%s): encoding that clip live",
                           path, error)
            return None

    def lookup(self, sig):
        """The cached features of the waveform ``sig`` (as the dataset reads it)."""
        return self.read(clip_key(sig, self.max_audio_seconds))


def open_cache(root, model):
    """The :class:`FeatureCache` training or decoding should read, or None.

    None (with a log line saying why) when ``root`` is not given, when the base encoder
    is not cacheable or when no features were computed for this encoder; a folder for
    this fingerprint written for another encoder raises :class:`FeatureCacheError`.
    """
    if not root:
        return None
    blockers = cache_blockers(model.base_encoder)
    if blockers:
        logger.info("feature cache not used: %s; the base encoder runs on every batch",
                    "; ".join(blockers))
        return None
    cache = FeatureCache(root, model)
    if not cache.exists():
        others = sorted(os.listdir(root)) if os.path.isdir(root) else []
        logger.warning("feature cache: no features for this base encoder in %s "
                       "(fingerprint %s; folders there: %s): encoding live. Run the "
                       "recipe's features step (stage 2) to compute them", cache.folder,
                       cache.fingerprint[:16], ", ".join(others) or "none")
        return None
    dtype = cache.check()
    logger.info("feature cache: reading %s features of the base encoder from %s", dtype,
                cache.folder)
    return cache


# -------------------------------------------------------------------- extraction
def shard_marker(cache, manifests, shard):
    """Path of the marker that says shard ``(J, N)`` of ``manifests`` is complete."""
    digest = hashlib.sha256()
    for manifest in manifests:
        with open(manifest, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    index, count = shard
    return os.path.join(cache.folder, "done", f"{digest.hexdigest()[:16]}.shard{index}of{count}")


def extract(model, cache, datasets, shard=(1, 1), batch_size=8, device="cpu",
            dtype="float32", marker=None, progress=True):
    """Encode every clip of ``datasets`` in shard ``(J, N)`` not cached yet.

    Arguments
    ---------
    model : mowe.models.audio_llm.AudioLLM
    cache : FeatureCache
    datasets : list of DynamicItemDataset
        Giving ``id`` and ``sig`` (:func:`mowe.data.make_dataset`).
    shard : (int, int)
        Every N-th clip (over the sorted ``(manifest, id)`` list), from the J-th.
    marker : str, optional
        Written when the shard is complete; a shard whose marker exists is skipped.

    Returns
    -------
    dict
        Counts: ``encoded``, ``cached`` (found from an earlier run), ``unreadable``.
    """
    from speechbrain.dataio.dataloader import make_dataloader
    from tqdm import tqdm

    from mowe.data.collate import SkipUnreadableClips
    from mowe.models.encoders import trim_batch

    counts = {"encoded": 0, "cached": 0, "unreadable": 0}
    if marker and os.path.isfile(marker):
        counts["skipped_shard"] = 1
        return counts
    cache.create(dtype)
    encoder = model.base_encoder.to(device).eval()
    index, count = shard
    items = [(n, utt) for n, data in enumerate(datasets) for utt in sorted(data.data_ids)]
    items = items[index - 1::count]
    bar = tqdm(total=len(items), desc=f"features {index}/{count}", disable=not progress)
    for n, data in enumerate(datasets):
        wanted = {utt for m, utt in items if m == n}
        if not wanted:
            continue
        subset = data.filtered_sorted(key_test={"id": lambda utt: utt in wanted},
                                      sort_key="duration", reverse=True)
        unreadable = SkipUnreadableClips()
        loader = make_dataloader(subset, batch_size=batch_size, collate_fn=unreadable)
        for batch in loader:
            if batch is None:  # no clip of this batch could be read
                continue
            wavs, wav_lens = batch.sig
            lengths = torch.round(wav_lens * wavs.shape[1]).long()
            keys = [clip_key(wavs[i, :int(lengths[i])], cache.max_audio_seconds)
                    for i in range(len(batch.id))]
            todo = [i for i, key in enumerate(keys) if not cache.has(key)]
            counts["cached"] += len(keys) - len(todo)
            if todo:
                rows = torch.tensor(todo)
                wav, lens = trim_batch(wavs[rows], wav_lens[rows], cache.max_audio_seconds)
                with torch.no_grad():
                    feats, feat_lens = encoder(wav.to(device), lens.to(device))
                for j, i in enumerate(todo):
                    length = int(feat_lens[j])
                    frames = feats[j] if cache.fixed_length else feats[j, :length]
                    cache.write(keys[i], frames, length)
                counts["encoded"] += len(todo)
            bar.update(len(batch.id))
        counts["unreadable"] += len(unreadable.skipped)
        bar.update(len(unreadable.skipped))
    bar.close()
    if marker:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        write_text_atomic(marker, json.dumps(counts) + "\n")
    return counts
