"""Audio encoders behind one interface: ``(wav, wav_lens) -> (feats [B, T, D], feat_lens)``.

``wav`` is ``[B, S]`` 16 kHz audio, ``wav_lens`` the relative lengths SpeechBrain's
``PaddedBatch`` produces; ``feat_lens`` is a ``[B]`` long tensor of valid frames.
Every encoder exposes ``output_dim`` and a ``freeze`` flag.

* :class:`WhisperEncoder` — any Hugging Face Whisper checkpoint through SpeechBrain's
  Whisper lobe, padded to 30 s like the paper or, cheaper, unpadded (the positional
  table sliced to the clip's frames, padding frames masked out of the attention).
* :class:`SSLEncoder` — HuBERT / WavLM / wav2vec2 through SpeechBrain's lobes.
* :class:`SmallEncoder` — filterbanks + conv subsampling + a few transformer layers,
  trained from scratch: the weak encoder of offline configurations.

:func:`make_encoder` builds any of them from a plain ``kind`` key, so that a YAML spec
can make any of them the *base* encoder (the paper's Table I: each encoder alone with
the LLM).

Example
-------
>>> import torch
>>> encoder = SmallEncoder(d_model=32, num_layers=1, num_heads=2)
>>> feats, lens = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
>>> feats.shape, lens.tolist()
(torch.Size([2, 26, 32]), [26, 13])
"""

import logging
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from mowe.provision.model_sources import check_local_source

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


def absolute_lengths(wav, wav_lens):
    """Relative lengths -> number of valid samples per row (long tensor)."""
    if wav_lens is None:
        return torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    return torch.round(wav_lens * wav.shape[1]).long().clamp(1, wav.shape[1])


def trim_batch(wav, wav_lens, seconds, sample_rate=SAMPLE_RATE):
    """Cut every clip of a batch to its first ``seconds`` (the paper's 30 s window).

    Every encoder then sees the same audio: Whisper cannot look past 30 s, and without
    the cut HuBERT or a small encoder would see the whole clip and their frames would be
    squeezed onto Whisper's 30 s when aligned.

    Arguments
    ---------
    wav : torch.Tensor
        ``[B, S]`` audio.
    wav_lens : torch.Tensor
        ``[B]`` relative lengths.
    seconds : float or None
        Window; None keeps the batch as it is.

    Returns
    -------
    wav, wav_lens
        ``[B, min(S, seconds * rate)]`` and the relative lengths in that batch.

    Example
    -------
    >>> wav, lens = trim_batch(torch.zeros(2, 48000), torch.tensor([1.0, 0.25]), 2.0)
    >>> wav.shape, lens.tolist()
    (torch.Size([2, 32000]), [1.0, 0.375])
    """
    if not seconds:
        return wav, wav_lens
    limit = int(round(float(seconds) * sample_rate))
    if wav.shape[1] <= limit:
        return wav, wav_lens
    lengths = absolute_lengths(wav, wav_lens).clamp(max=limit)
    return wav[:, :limit], lengths.to(torch.float32) / limit


def frame_mask(lengths, frames):
    """``[B, frames]`` bool mask, True on valid frames."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class AudioEncoder(nn.Module):
    """Base class: freezing and the shared interface.

    ``fixed_length`` is True for an encoder whose frames past ``feat_lens`` are real
    features of padding it was trained with (Whisper in 30 s mode): the AudioLLM then
    feeds the adapter every frame, valid and padding, as the paper does.
    """

    output_dim = None
    fixed_length = False
    # its weights come from a pretrained source (a frozen one need not be checkpointed)
    from_source = True

    def __init__(self, freeze=False):
        super().__init__()
        self.freeze = freeze

    def apply_freeze(self):
        """Stop gradients into every parameter when ``freeze`` is set."""
        if self.freeze:
            for parameter in self.parameters():
                parameter.requires_grad_(False)

    def forward(self, wav, wav_lens):
        if self.freeze:
            with torch.no_grad():
                return self.encode(wav, wav_lens)
        return self.encode(wav, wav_lens)

    def encode(self, wav, wav_lens):
        """Subclasses: return ``(feats, feat_lens)``."""
        raise NotImplementedError


class SpecAugment(nn.Module):
    """SpecAugment masking (Park et al., 2019) with SpeechBrain's ``SpectrogramDrop``.

    Input ``[batch, frames, bins]``; ``time_masks`` masks of up to ``time_width`` frames
    and ``freq_masks`` masks of up to ``freq_width`` bins, replaced by the mean. With
    zero masks it is the identity (the paper configs' default; Table VI turns it on).

    Given ``lens`` (valid frames per row), the time masks of a row are drawn inside its
    valid frames and the mean is that of its valid frames: a 5 s clip padded to 30 s
    gets its masks on its speech, not on the 25 s of padding.

    Arguments
    ---------
    time_masks, time_width, freq_masks, freq_width : int

    Example
    -------
    >>> augment = SpecAugment(time_masks=2, time_width=10, freq_masks=0)
    >>> feats = torch.randn(1, 300, 8)
    >>> changed = (augment(feats.clone(), torch.tensor([50])) != feats).any(-1)[0]
    >>> bool(changed[50:].any())
    False
    """

    def __init__(self, time_masks=2, time_width=40, freq_masks=2, freq_width=27):
        super().__init__()
        from speechbrain.augment.freq_domain import SpectrogramDrop

        self.masks = nn.ModuleList(
            SpectrogramDrop(drop_length_low=0, drop_length_high=width, drop_count_low=count,
                            drop_count_high=count, replace="mean", dim=dim)
            for count, width, dim in ((time_masks, time_width, 1), (freq_masks, freq_width, 2))
            if count > 0 and width > 0)

    def forward(self, feats, lens=None):
        """Mask ``feats`` ``[batch, frames, bins]``; ``lens``: valid frames per row."""
        for mask in self.masks:
            if mask.dim != 1 or lens is None:
                feats = mask(feats)
                continue
            rows = []
            for row, length in zip(feats, lens.tolist()):
                length = max(1, min(int(length), row.shape[0]))
                valid = mask(row[None, :length].clone())[0]
                rows.append(torch.cat([valid, row[length:]]))
            feats = torch.stack(rows)
        return feats


class WhisperEncoder(AudioEncoder):
    """The encoder of a Hugging Face Whisper checkpoint (hub id or local directory).

    Arguments
    ---------
    source : str
        Hub id (``openai/whisper-large-v3``) or local directory.
    save_path : str
        Cache folder for SpeechBrain's lobe.
    pad_to_30s : bool
        True: pad/trim every clip to 30 s as Whisper was trained (the paper's setup).
        False: encode only the clip's own frames (positional table sliced, padding
        frames masked): several times cheaper for short clips.
    freeze : bool
        Keep the encoder's weights fixed.
    augment : nn.Module or list of nn.Module, optional
        Applied to the log-mel batch ``[batch, frames, mels]`` in training mode only,
        e.g. SpeechBrain's ``SpectrogramDrop`` (time and frequency masks: SpecAugment).
    """

    def __init__(self, source, save_path, pad_to_30s=False, freeze=False, augment=None):
        super().__init__(freeze=freeze)
        if augment is not None and not isinstance(augment, (list, tuple)):
            augment = [augment]
        self.augment = nn.ModuleList(augment or [])
        # Imported here so that the rest of the library works without the lobe's deps.
        from speechbrain.integrations.huggingface.whisper import Whisper

        check_local_source(source, "Whisper encoder")
        self.source = source
        self.lobe = Whisper(source, save_path, encoder_only=True, freeze=False)
        self.encoder = self.lobe.model.encoder
        self.pad_to_30s = pad_to_30s
        self.output_dim = self.encoder.config.d_model
        self.max_mel_frames = (
            self.encoder.config.max_source_positions
            * self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]
        )
        self.hop_length = self.lobe._hop_length
        self.apply_freeze()

    @property
    def fixed_length(self):
        """In 30 s mode the encoder always returns 1500 frames, padding included."""
        return bool(self.pad_to_30s)

    def log_mel(self, wav):
        """Log-mel of one clip, normalised with the clip's own maximum.

        SpeechBrain's ``log_mel_spectrogram`` takes the maximum over the whole batch,
        which makes a clip's features depend on its batch-mates; Whisper (and batched
        decoding that must equal one-by-one decoding) needs it per clip.
        """
        return self.lobe.log_mel_spectrogram(wav.unsqueeze(0))[0]

    def encode(self, wav, wav_lens):
        lengths = absolute_lengths(wav, wav_lens)
        mel_lens = torch.clamp(lengths // self.hop_length, min=1, max=self.max_mel_frames)
        mels = []
        for row, length in zip(wav, lengths.tolist()):
            clip = row[:length]
            if self.pad_to_30s:
                clip = self.lobe.pad_or_trim(clip)
            mels.append(self.log_mel(clip)[:, : self.max_mel_frames])
        feat_lens = torch.div(mel_lens + 1, 2, rounding_mode="floor")
        if self.pad_to_30s:
            mel = self._augment(torch.stack(mels), mel_lens)
            return self.encoder(mel).last_hidden_state, feat_lens
        frames = max(m.shape[-1] for m in mels)
        mel = torch.stack([F.pad(m, (0, frames - m.shape[-1])) for m in mels])
        return self._encode_unpadded(self._augment(mel, mel_lens), mel_lens, feat_lens), \
            feat_lens

    def _augment(self, mel, mel_lens):
        """SpecAugment-style masking of ``[batch, mels, frames]`` while training; the
        time masks of a clip fall inside its ``mel_lens`` valid frames."""
        if not self.training or not len(self.augment):
            return mel
        mel = mel.transpose(1, 2)
        for module in self.augment:
            mel = module(mel, mel_lens) if isinstance(module, SpecAugment) else module(mel)
        return mel.transpose(1, 2)

    def _encode_unpadded(self, mel, mel_lens, feat_lens):
        """Whisper's encoder forward on clips shorter than 30 s.

        transformers' ``WhisperEncoder.forward`` refuses any input but 3000 mel
        frames, so its steps are repeated here on the slice of the positional table
        the clip needs. Frames past a clip's end are zeroed after the first conv and
        masked as attention keys so that a clip encodes the same alone or batched.
        """
        enc = self.encoder
        hidden = F.gelu(enc.conv1(mel))
        hidden = hidden * frame_mask(mel_lens, hidden.shape[-1]).unsqueeze(1).to(hidden.dtype)
        hidden = F.gelu(enc.conv2(hidden)).permute(0, 2, 1)
        frames = hidden.shape[1]
        hidden = hidden + enc.embed_positions.weight[:frames].to(hidden.dtype)
        hidden = F.dropout(hidden, p=enc.dropout, training=self.training)
        valid = frame_mask(feat_lens, frames)
        attention_mask = torch.zeros(valid.shape, dtype=hidden.dtype, device=hidden.device)
        attention_mask = attention_mask.masked_fill(~valid, torch.finfo(hidden.dtype).min)
        attention_mask = attention_mask[:, None, None, :]
        for layer in enc.layers:
            if self.training and enc.layerdrop > 0 and torch.rand([]) < enc.layerdrop:
                continue
            out = layer(hidden, attention_mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(hidden)


class SSLEncoder(AudioEncoder):
    """HuBERT, WavLM or wav2vec2 through SpeechBrain's Hugging Face lobes.

    Arguments
    ---------
    source : str
        Hub id (``facebook/hubert-base-ls960``) or local directory.
    save_path : str
        Cache folder for the lobe.
    kind : str
        ``"hubert"``, ``"wavlm"`` or ``"wav2vec2"``.
    freeze : bool
        Keep all weights fixed.
    freeze_feature_extractor : bool
        Keep only the convolutional feature extractor fixed.
    """

    def __init__(self, source, save_path, kind="hubert", freeze=False,
                 freeze_feature_extractor=True):
        super().__init__(freeze=freeze)
        if kind == "hubert":
            from speechbrain.integrations.huggingface.hubert import HuBERT as Lobe
        elif kind == "wavlm":
            from speechbrain.integrations.huggingface.wavlm import WavLM as Lobe
        elif kind == "wav2vec2":
            from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2 as Lobe
        else:
            raise ValueError(f"unknown SSL encoder kind {kind!r}: use hubert, wavlm or wav2vec2")
        check_local_source(source, f"{kind} encoder")
        self.source = source
        self.lobe = Lobe(source, save_path, freeze=False,
                         freeze_feature_extractor=freeze_feature_extractor)
        self.output_dim = self.lobe.model.config.hidden_size
        self.apply_freeze()

    def encode(self, wav, wav_lens):
        lengths = absolute_lengths(wav, wav_lens)
        feats = self.lobe(wav, wav_lens)
        feat_lens = self.lobe.model._get_feat_extract_output_lengths(lengths).long()
        return feats, feat_lens.clamp(1, feats.shape[1])


class SmallEncoder(AudioEncoder):
    """A small encoder trained from scratch: fbanks -> 2 strided convs -> transformer.

    About 0.1-2 M parameters at the default sizes: "weak" next to Whisper. The two
    stride-2 convolutions give 40 ms frames.

    Arguments
    ---------
    n_mels : int
        Filterbank channels.
    d_model : int
        Width (= ``output_dim``).
    num_layers : int
        Transformer layers.
    num_heads : int
        Attention heads.
    ffn_dim : int, optional
        Feed-forward width (default ``4 * d_model``).
    dropout : float
        Dropout in the transformer layers.
    freeze : bool
        Keep the weights fixed.
    """

    from_source = False  # random init: checkpoints and packages keep it, frozen or not

    def __init__(self, n_mels=40, d_model=128, num_layers=2, num_heads=4, ffn_dim=None,
                 dropout=0.1, freeze=False):
        super().__init__(freeze=freeze)
        from speechbrain.lobes.features import Fbank

        self.fbank = Fbank(sample_rate=SAMPLE_RATE, n_mels=n_mels)
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, ffn_dim or 4 * d_model, dropout, batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.output_dim = d_model
        self.apply_freeze()

    @staticmethod
    def _conv_lens(lens):
        return torch.div(lens + 1, 2, rounding_mode="floor")

    def encode(self, wav, wav_lens):
        lengths = absolute_lengths(wav, wav_lens)
        # Filterbanks per clip: the STFT's edge padding would otherwise see the
        # batch's zero padding and make a clip's last frames depend on its batch-mates.
        fbanks = [self.fbank(row[:length].unsqueeze(0))[0]
                  for row, length in zip(wav, lengths.tolist())]
        fbank_lens = torch.tensor([f.shape[0] for f in fbanks], device=wav.device)
        frames = int(fbank_lens.max())
        hidden = torch.stack([F.pad(f, (0, 0, 0, frames - f.shape[0])) for f in fbanks])
        hidden = hidden.transpose(1, 2)  # [B, n_mels, T]
        lens = fbank_lens
        for conv in (self.conv1, self.conv2):
            hidden = F.gelu(conv(hidden))
            lens = self._conv_lens(lens)
            hidden = hidden * frame_mask(lens, hidden.shape[-1]).unsqueeze(1).to(hidden.dtype)
        hidden = hidden.transpose(1, 2)
        hidden = hidden + SmallEncoder._sinusoids(hidden.shape[1], hidden.shape[2], hidden)
        padding = ~frame_mask(lens, hidden.shape[1])
        hidden = self.transformer(hidden, src_key_padding_mask=padding)
        hidden = self.norm(hidden) * (~padding).unsqueeze(-1).to(hidden.dtype)
        return hidden, lens

    @staticmethod
    def _sinusoids(frames, dim, like):
        position = torch.arange(frames, device=like.device, dtype=like.dtype).unsqueeze(1)
        scale = torch.exp(torch.arange(0, dim, 2, device=like.device, dtype=like.dtype)
                          * (-math.log(10000.0) / dim))
        table = torch.zeros(frames, dim, device=like.device, dtype=like.dtype)
        table[:, 0::2] = torch.sin(position * scale)
        table[:, 1::2] = torch.cos(position * scale[: dim // 2])
        return table.unsqueeze(0)


# SmallEncoder's settings and defaults (what a saved specialist's config.json may hold)
SMALL_ENCODER_CONFIG = {"n_mels": 40, "d_model": 128, "num_layers": 2, "num_heads": 4,
                        "ffn_dim": None, "dropout": 0.1}


def load_small_encoder(path, freeze=False, dropout=None):
    """A :class:`SmallEncoder` pretrained elsewhere (e.g. by :mod:`mowe.train.specialists`).

    ``path`` holds ``config.json`` (plain data: the SmallEncoder settings, checked here)
    and ``encoder.safetensors`` (weights only; nothing in either is executed).

    Arguments
    ---------
    path : str
        The folder.
    freeze : bool
        Keep the weights fixed.
    dropout : float, optional
        Override the saved dropout (e.g. 0 while fine-tuning gently).

    Returns
    -------
    SmallEncoder
        With ``from_source`` set: its weights come from a pretrained source, so
        ``param_groups``' ``pretrained_encoders`` includes it.
    """
    import json

    from safetensors.torch import load_file

    config_file = os.path.join(path, "config.json")
    weights_file = os.path.join(path, "encoder.safetensors")
    for needed in (config_file, weights_file):
        if not os.path.isfile(needed):
            raise FileNotFoundError(f"pretrained small encoder: {needed} is missing (make it "
                                    "with python -m mowe specialists --out DIR)")
    with open(config_file, encoding="utf-8") as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or config.pop("kind", "small") != "small":
        raise ValueError(f"{config_file}: not a small-encoder config")
    unknown = sorted(set(config) - set(SMALL_ENCODER_CONFIG))
    if unknown:
        raise ValueError(f"{config_file}: unknown SmallEncoder settings {unknown}")
    for key, value in config.items():
        if value is not None and not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{config_file}: {key} must be a number, not {value!r}")
    if dropout is not None:
        config["dropout"] = dropout
    encoder = SmallEncoder(**config)
    try:
        encoder.load_state_dict(load_file(weights_file))
    except RuntimeError as error:
        raise ValueError(f"{weights_file} does not fit {config_file}: {error}") from error
    encoder.from_source = True
    encoder.source = path
    encoder.freeze = freeze
    encoder.apply_freeze()
    return encoder


ENCODER_KINDS = ("whisper", "hubert", "wavlm", "wav2vec2", "small")


def make_encoder(kind="whisper", source=None, save_path=None, pad_to_30s=False,
                 freeze=False, augment=None, **small_kwargs):
    """Build the encoder named by ``kind`` (the base encoder of a YAML spec).

    HyperPyYAML cannot change a node's class through an override, so the spec picks
    the encoder with one plain key (``base_encoder_kind``), as it does for the adapter.

    Parameters
    ----------
    kind : str
        ``whisper`` (:class:`WhisperEncoder`), ``hubert`` / ``wavlm`` / ``wav2vec2``
        (:class:`SSLEncoder`) or ``small`` (:class:`SmallEncoder`, trained from scratch).
    source : str
        Hub id or local directory (unused by ``small``).
    save_path : str
        Cache folder of SpeechBrain's lobes.
    pad_to_30s : bool
        Whisper only: pad every clip to 30 s (see :class:`WhisperEncoder`).
    freeze : bool
        Keep the encoder's weights fixed.
    augment : nn.Module, optional
        SpecAugment on the log-mel; Whisper only (SSL encoders read the waveform). A
        :class:`SpecAugment` without masks is accepted by every kind.
    **small_kwargs
        ``small`` only: :class:`SmallEncoder` settings (``d_model``, ``num_layers``...).

    Returns
    -------
    AudioEncoder

    Example
    -------
    >>> encoder = make_encoder("small", d_model=16, num_layers=1, num_heads=2)
    >>> type(encoder).__name__, encoder.output_dim
    ('SmallEncoder', 16)
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; choose one of {ENCODER_KINDS}")
    masks = augment is not None and any(len(getattr(m, "masks", [m])) for m in
                                        (augment if isinstance(augment, (list, tuple))
                                         else [augment]))
    if kind == "whisper":
        return WhisperEncoder(source, save_path, pad_to_30s=pad_to_30s, freeze=freeze,
                              augment=augment)
    if masks:
        raise ValueError(f"SpecAugment is implemented on Whisper's log-mel; a {kind} base "
                         "encoder cannot take spec_augment masks")
    if kind == "small":
        return SmallEncoder(freeze=freeze, **small_kwargs)
    if small_kwargs:
        raise ValueError(f"{sorted(small_kwargs)} are SmallEncoder settings, not {kind}'s")
    return SSLEncoder(source, save_path, kind=kind, freeze=freeze)
