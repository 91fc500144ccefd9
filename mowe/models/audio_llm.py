"""AudioLLM: base encoder ⊕ MoWE -> adapter -> projection -> LLM (with LoRA).

``z = E_base(a) ⊕_f MoWE(a)`` is downsampled by the adapter and projected to the
LLM width. The LLM sees, for each sample, its chat template around one user turn
``<audio tokens>\\n<instruction>`` followed, in training, by the answer and the end
token; the next-token loss counts the answer tokens only.

Sequences are assembled per sample (audio tokens of different clips may differ in
number), right-padded for training and left-padded for generation, so that a batch
decodes exactly as its samples would one by one.
"""

import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from speechbrain.utils.checkpoints import (mark_as_loader, mark_as_saver,
                                           register_checkpoint_hooks)

from mowe.models.encoders import trim_batch
from mowe.models.residual_start import build_as_baseline

IGNORE_INDEX = -100
MOWE_FEATURE_INITS = ("random", "zero")
logger = logging.getLogger(__name__)


@dataclass
class AudioLLMOutput:
    """Training-time result of :meth:`AudioLLM.forward`.

    Attributes
    ----------
    next_token_loss : torch.Tensor
        Mean cross-entropy over answer tokens.
    mowe_loss : torch.Tensor
        L_MoWE (0 without a mixture).
    mowe_loss_parts : dict
        Named parts of L_MoWE.
    selected : torch.Tensor or None
        ``[B, n_routers]`` weak encoder chosen per router.
    num_answer_tokens : int
        Tokens the loss was averaged over.
    encoder_calls : dict
        Weak-encoder index -> samples it encoded in this batch.
    adapter_loss : torch.Tensor or None
        The MoE adapter's load-balancing loss (None for a dense adapter).
    expert_counts : torch.Tensor or None
        ``[B, E]`` audio tokens of each clip routed to each MoE-adapter expert.
    """

    next_token_loss: torch.Tensor
    mowe_loss: torch.Tensor
    mowe_loss_parts: dict = field(default_factory=dict)
    selected: torch.Tensor = None
    num_answer_tokens: int = 0
    encoder_calls: dict = field(default_factory=dict)
    adapter_loss: torch.Tensor = None
    expert_counts: torch.Tensor = None


def _takes_logits_to_keep(llm):
    """Whether the causal LM behind ``llm`` accepts ``logits_to_keep`` (transformers'
    way of projecting only some positions to the vocabulary)."""
    import inspect

    model = getattr(llm, "model", llm)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = getattr(base, "forward", None)
    if forward is None:  # not a transformers model (e.g. a test stand-in)
        return False
    try:
        return "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _build(component, **kwargs):
    """Instantiate a ``!name:`` partial from YAML, or pass a built module through."""
    if component is None or isinstance(component, nn.Module):
        return component
    return component(**kwargs)


@register_checkpoint_hooks
class AudioLLM(nn.Module):
    """The multitask audio LLM of the MoWE paper.

    Arguments
    ---------
    base_encoder : mowe.models.encoders.AudioEncoder
        The strong encoder (e.g. Whisper).
    llm : mowe.models.llm.LanguageModel
        The LLM with its tokenizer (and LoRA).
    adapter : callable or nn.Module
        Adapter, or a factory taking ``input_dim`` (``!name:`` in YAML).
    mixture : callable or nn.Module, optional
        The MoWE, or a factory taking ``base_dim``; ``None`` gives the base-only
        baseline.
    system_prompt : str, optional
        A system turn put before the user turn.
    audio_placeholder : str
        Marker replaced by the audio tokens inside the chat template.
    max_audio_seconds : float, optional
        Every clip is cut to its first ``max_audio_seconds`` before any encoder sees it
        (paper: audio trimmed or padded to 30 s), in training, validation and decoding
        alike; None keeps whole clips.
    answer_only_lm_head : bool
        Project to the vocabulary only the positions that predict an answer token (the
        span of answer positions of the batch) instead of every prompt and audio
        position: the same loss and gradients (tested), less work — the LM head of a
        small LLM is a large share of its cost. Needs an LLM whose forward takes
        transformers' ``logits_to_keep``; otherwise the full head is used.
    pack_rows : bool
        In training and validation, feed the LLM the batch's rows packed into one
        sequence with no padding, and the prompt's shared prefix (the chat template's
        system turn and the start of the user turn, the same tokens in every row) in it
        once: each row attends to the prefix and to itself (a 4D attention mask, each
        row's own position ids). The same loss and gradients as padded rows without
        dropout (tested), fewer LLM positions than padded rows (the figure,
        ``llm_positions_packed_over_padded``: bench/RESULTS.md). With LoRA dropout on, the prefix's dropout draw is shared by the
        batch's rows (each row alone draws as before). Attention then spans the packed
        sequence (its cost grows with the square of the batch's total length): turn it
        off for long sequences on an accelerator. Used with ``answer_only_lm_head`` and an
        LLM on transformers' SDPA or eager attention (padded rows otherwise).
    mowe_feature_init : str
        How the adapter starts on the MoWE features. ``random``: PyTorch's default
        initialisation over the whole concatenation ``[z_base ; z_MoWE]``. ``zero``: a
        residual start (:mod:`mowe.models.residual_start`): the model starts as its
        base-only baseline does for the same seed. Exact for the linear and conv
        adapters; the MoE adapter's expert widths follow its input size, so it gets the
        zeros only. Ignored without a mixture.

    Example
    -------
    See ``tests/unit/test_model.py``: the model is normally built from
    ``recipes/conf/model/audio_llm.yaml``.
    """

    def __init__(self, base_encoder, llm, adapter, mixture=None, system_prompt=None,
                 audio_placeholder="<|mowe_audio|>", max_audio_seconds=None,
                 answer_only_lm_head=True, pack_rows=True, mowe_feature_init="random"):
        super().__init__()
        if mowe_feature_init not in MOWE_FEATURE_INITS:
            raise ValueError(f"mowe_feature_init must be one of {list(MOWE_FEATURE_INITS)}, "
                             f"not {mowe_feature_init!r}")
        self.max_audio_seconds = max_audio_seconds
        self.answer_only_lm_head = answer_only_lm_head and _takes_logits_to_keep(llm)
        # packing needs an attention that takes a 4D mask (not flash-attention-2's 2D)
        config = getattr(getattr(llm, "model", None), "config", None)
        self.pack_rows = pack_rows and \
            getattr(config, "_attn_implementation", None) in ("sdpa", "eager")
        self.base_encoder = base_encoder
        base_dim = base_encoder.output_dim
        if mixture is not None and mowe_feature_init == "zero":
            self.mixture, self.adapter = build_as_baseline(mixture, adapter, base_dim)
        else:
            self.mixture = _build(mixture, base_dim=base_dim)
            feature_dim = base_dim + (self.mixture.output_dim if self.mixture else 0)
            self.adapter = _build(adapter, input_dim=feature_dim)
        self.llm = llm
        self.projection = nn.Linear(self.adapter.output_dim, llm.hidden_size)
        self.system_prompt = system_prompt
        self.audio_placeholder = audio_placeholder
        self._prompt_cache = {}
        # clips whose base features came from a feature cache / were encoded live instead
        self.feature_cache_hits = 0
        self.feature_cache_misses = 0
        # frozen source weights that a loaded state replaced (e.g. ``init_from`` a run
        # that fine-tuned the base encoder, now frozen): saved from then on, not dropped
        self._loaded_frozen_keys = set()

    @property
    def tokenizer(self):
        """The LLM's tokenizer."""
        return self.llm.tokenizer

    # --------------------------------------------------------------- checkpoints
    @mark_as_saver
    def save_checkpoint(self, path):
        """Save what training changed: everything but the frozen weights that come from
        the LLM's and the base encoder's sources (:meth:`frozen_source_keys`, except
        those a loaded state replaced).

        For SmolLM2-135M with a frozen Whisper tiny.en (``egs/synthetic``) this keeps the
        MoWE system's model file to LoRA, weak encoders, adapter and projection, a
        fraction of the full state (which also holds the tied LM head and the base
        encoder under both of its names); for an 8B LLM it is the difference that
        matters.
        """
        frozen = self._keys_left_to_sources()
        torch.save({key: value for key, value in self.state_dict().items()
                    if key not in frozen}, path)

    @mark_as_loader
    def load_checkpoint(self, path, end_of_epoch=False):
        """Load a checkpoint written by :meth:`save_checkpoint`, checking its keys.

        Checkpoints written before the frozen base encoder and the tied LM head were
        left out still load; their copies of those weights, equal to the sources', are
        not carried into later saves.
        """
        from mowe.train.resume import safe_load

        state = safe_load(path)  # weights_only=True: a crafted file cannot run code
        self.load_trained_state(state, path)

    def frozen_source_keys(self):
        """State-dict keys of the frozen weights that come from the LLM's and the base
        encoder's sources (a packaged model does not store them)."""
        # state_dict(keep_vars=True), not named_parameters(): a module reachable under two
        # names (the Whisper lobe's encoder is also ``base_encoder.encoder``) has both keys.
        sources = [("llm", self.llm)]
        if getattr(self.base_encoder, "from_source", True):  # not a from-scratch encoder
            sources.append(("base_encoder", self.base_encoder))
        return {f"{prefix}.{name}" for prefix, module in sources
                for name, value in module.state_dict(keep_vars=True).items()
                if isinstance(value, nn.Parameter) and not value.requires_grad}

    def _keys_left_to_sources(self):
        """What checkpoints and packages leave out: :meth:`frozen_source_keys` but those
        a loaded state changed."""
        return self.frozen_source_keys() - self._loaded_frozen_keys

    def trained_state_dict(self):
        """The state dict without :meth:`frozen_source_keys` (except those a loaded state
        replaced): what training changed (and buffers), as contiguous CPU tensors that
        own their memory (for safetensors)."""
        frozen = self._keys_left_to_sources()
        return {key: value.detach().to("cpu").contiguous().clone()
                for key, value in self.state_dict().items() if key not in frozen}

    def load_trained_state(self, state, origin, may_lack=None):
        """Load ``state`` (e.g. :meth:`trained_state_dict`), checking its keys.

        Arguments
        ---------
        state : dict
            Tensors by state-dict key.
        origin : str
            The file it came from, for error messages.
        may_lack : set, optional
            Keys ``state`` may miss (default: :meth:`frozen_source_keys`).
        """
        hint = "(was it trained with another encoder/mixture/adapter configuration?)"
        # frozen source weights that ``state`` changes are kept in later saves; equal
        # copies (checkpoints written before they were left out) are not
        current, from_sources = self.state_dict(), self.frozen_source_keys()
        self._loaded_frozen_keys |= {
            key for key in set(state) & from_sources
            if current[key].shape == state[key].shape
            and not torch.equal(current[key], state[key].to(current[key]))}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as error:
            raise RuntimeError(f"checkpoint {origin} does not fit this model spec {hint}: "
                               f"{error}") from error
        may_lack = from_sources if may_lack is None else may_lack
        absent = sorted(set(missing) - set(may_lack))
        if unexpected or absent:
            raise RuntimeError(
                f"checkpoint {origin} does not fit this model spec {hint}: unexpected keys "
                f"{unexpected[:5]}, missing keys {absent[:5]}"
            )

    # ---------------------------------------------------------------- audio side
    def encode_features(self, wav, wav_lens, base_feats=None):
        """Audio -> ``z = z_base ⊕_f z_MoWE``, the adapter's input.

        Clips are first cut to ``max_audio_seconds``, so that every encoder sees the same
        audio and each encoder's frame at time t comes from the audio at time t.

        Arguments
        ---------
        wav, wav_lens : torch.Tensor
            Audio batch.
        base_feats : list, optional
            Per clip, its precomputed base-encoder output
            (:class:`mowe.data.precomputed_features.CachedFeatures`) or None (a cache miss: that clip is
            encoded live, counted in ``feature_cache_misses`` and warned about).

        Returns
        -------
        feats : torch.Tensor
            ``[B, T, D]`` concatenated features.
        adapter_lens : torch.Tensor
            ``[B]`` frames the adapter reads: the valid frames, or every frame for a
            fixed-length base encoder (Whisper in 30 s mode: its 1500 frames, padding
            included, as the paper's adapter downsamples them; the MoWE features are
            zero on the padding frames).
        base_lens : torch.Tensor
            ``[B]`` valid base frames.
        mowe : mowe.models.mixture.MoWEOutput or None
        """
        wav, wav_lens = trim_batch(wav, wav_lens, self.max_audio_seconds)
        if base_feats is None:
            z_base, base_lens = self.base_encoder(wav, wav_lens)
        else:
            if any(key.startswith("base_encoder.") for key in self._loaded_frozen_keys):
                from mowe.data.precomputed_features import FeatureCacheError

                raise FeatureCacheError(
                    "the frozen base encoder holds weights loaded from a checkpoint "
                    "(init_from a run that fine-tuned it), not its source's, so features "
                    "cached from the source do not apply: train without the feature cache "
                    "(recipes/train.py without --feature_cache; a recipe: use_features=false)")
            z_base, base_lens = self._cached_base_features(wav, wav_lens, base_feats)
        mowe = None
        feats = z_base
        if self.mixture is not None:
            mowe = self.mixture(wav, wav_lens, z_base, base_lens)
            feats = torch.cat([z_base, mowe.features.to(z_base.dtype)], dim=-1)
        adapter_lens = base_lens
        if getattr(self.base_encoder, "fixed_length", False):
            adapter_lens = torch.full_like(base_lens, feats.shape[1])
        return feats, adapter_lens, base_lens, mowe

    def _cached_base_features(self, wav, wav_lens, cached):
        """``(z_base, base_lens)`` from precomputed features; the clips without any are
        encoded live (and counted). Frames past a clip's valid length are zero: the
        mixture, routers and adapters read only the valid ones."""
        if len(cached) != wav.shape[0]:
            raise ValueError(f"{len(cached)} cached feature entries for a batch of "
                             f"{wav.shape[0]} clips")
        missing = [i for i, entry in enumerate(cached) if entry is None]
        self.feature_cache_hits += len(cached) - len(missing)
        rows, lens = [None] * len(cached), [0] * len(cached)
        if missing:
            if not self.feature_cache_misses:
                logger.warning("feature cache: %d of %d clips of a batch have no cached "
                               "base-encoder features: encoding them live (counted; "
                               "see the summary at the end)", len(missing), len(cached))
            self.feature_cache_misses += len(missing)
            index = torch.tensor(missing, device=wav.device)
            live, live_lens = self.base_encoder(wav[index], wav_lens[index])
            fixed = getattr(self.base_encoder, "fixed_length", False)
            for j, i in enumerate(missing):
                lens[i] = int(live_lens[j])
                rows[i] = live[j] if fixed else live[j, :lens[i]]
        dtype = next((r.dtype for r in rows if r is not None), None)
        if dtype is None:
            dtype = next(self.base_encoder.parameters()).dtype
        for i, entry in enumerate(cached):
            if entry is not None:
                rows[i] = entry.feats.to(wav.device, dtype)
                lens[i] = entry.length
        frames = max(row.shape[0] for row in rows)
        z_base = rows[0].new_zeros(len(rows), frames, rows[0].shape[-1])
        for i, row in enumerate(rows):
            z_base[i, : row.shape[0]] = row
        return z_base, torch.tensor(lens, dtype=torch.long, device=wav.device)

    def encode_audio(self, wav, wav_lens, base_feats=None):
        """Audio -> LLM-width audio tokens.

        Returns
        -------
        embeds : torch.Tensor
            ``[B, N, H_llm]`` audio tokens.
        token_lens : torch.Tensor
            ``[B]`` valid tokens per clip.
        mowe : mowe.models.mixture.MoWEOutput or None
        """
        embeds, token_lens, mowe, _ = self.encode_audio_with_aux(wav, wav_lens, base_feats)
        return embeds, token_lens, mowe

    def encode_audio_with_aux(self, wav, wav_lens, base_feats=None):
        """:meth:`encode_audio` plus the adapter's auxiliary outputs: a dict
        (``balance_loss``, ``expert_counts``) for the MoE adapter, else None."""
        feats, adapter_lens, _, mowe = self.encode_features(wav, wav_lens, base_feats)
        aux = None
        if getattr(self.adapter, "returns_aux", False):
            tokens, token_lens, aux = self.adapter(feats, adapter_lens)
        else:
            tokens, token_lens = self.adapter(feats, adapter_lens)
        return self.projection(tokens), token_lens, mowe, aux

    # ----------------------------------------------------------------- text side
    def prompt_ids(self, instruction):
        """Token ids before and after the audio inside the chat template."""
        cached = self._prompt_cache.get(instruction)
        if cached is not None:
            return cached
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user",
                         "content": f"{self.audio_placeholder}\n{instruction}"})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        prefix, suffix = text.split(self.audio_placeholder, 1)
        ids = (self.tokenizer(prefix, add_special_tokens=False).input_ids,
               self.tokenizer(suffix, add_special_tokens=False).input_ids)
        if len(self._prompt_cache) < 100_000:
            self._prompt_cache[instruction] = ids
        return ids

    def answer_ids(self, answer):
        """Answer token ids followed by the end-of-sequence token."""
        ids = self.tokenizer(answer, add_special_tokens=False).input_ids
        return ids + [self.tokenizer.eos_token_id]

    def _embed(self, ids, device):
        table = self.llm.embed_tokens
        return table(torch.tensor(ids, dtype=torch.long, device=device))

    def assemble(self, audio, token_lens, instructions, answers=None, padding_side="right"):
        """Build LLM inputs: prompt prefix, audio tokens, prompt suffix [, answer].

        Returns
        -------
        inputs_embeds : torch.Tensor
            ``[B, L, H]``.
        attention_mask : torch.Tensor
            ``[B, L]``.
        labels : torch.Tensor or None
            ``[B, L]`` answer token ids, ``-100`` elsewhere (only with ``answers``).
        """
        device = audio.device
        dtype = self.llm.embed_tokens.weight.dtype
        rows, label_rows = [], []
        for index, instruction in enumerate(instructions):
            prefix, suffix = self.prompt_ids(instruction)
            clip = audio[index, : int(token_lens[index])].to(dtype)
            parts = [self._embed(prefix, device), clip, self._embed(suffix, device)]
            labels = [IGNORE_INDEX] * (len(prefix) + clip.shape[0] + len(suffix))
            if answers is not None:
                answer = self.answer_ids(answers[index])
                parts.append(self._embed(answer, device))
                labels += answer
            rows.append(torch.cat(parts))
            label_rows.append(labels)
        length = max(row.shape[0] for row in rows)
        embeds = audio.new_zeros(len(rows), length, rows[0].shape[1], dtype=dtype)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long, device=device)
        for index, (row, row_labels) in enumerate(zip(rows, label_rows)):
            span = slice(length - row.shape[0], length) if padding_side == "left" \
                else slice(0, row.shape[0])
            embeds[index, span] = row
            mask[index, span] = 1
            labels[index, span] = torch.tensor(row_labels, device=device)
        return embeds, mask, (labels if answers is not None else None)

    # ------------------------------------------------------------------ training
    def forward(self, wav, wav_lens, instructions, answers, base_feats=None):
        """Next-token loss on the answers, plus the routing loss.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, S]`` 16 kHz audio.
        wav_lens : torch.Tensor
            ``[B]`` relative lengths.
        instructions, answers : list of str
        base_feats : list, optional
            Precomputed base-encoder features per clip (see :meth:`encode_features`).

        Returns
        -------
        AudioLLMOutput
        """
        audio, token_lens, mowe, aux = self.encode_audio_with_aux(wav, wav_lens, base_feats)
        embeds, mask, labels = self.assemble(audio, token_lens, instructions, answers)
        next_token_loss = self.next_token_loss(embeds, mask, labels,
                                               self.shared_prefix_length(instructions))
        answer_tokens = int((labels != IGNORE_INDEX).sum())
        adapter = {} if aux is None else {"adapter_loss": aux["balance_loss"],
                                          "expert_counts": aux["expert_counts"]}
        if mowe is None:
            return AudioLLMOutput(next_token_loss, next_token_loss.new_zeros(()),
                                  num_answer_tokens=answer_tokens, **adapter)
        return AudioLLMOutput(next_token_loss, mowe.loss, mowe.loss_parts, mowe.selected,
                              answer_tokens, mowe.calls, **adapter)

    def shared_prefix_length(self, instructions):
        """Length of the prompt prefix that every row of a batch shares (0 if none).

        The prefix (chat template and system turn before the audio) does not depend on
        the instruction, which comes after the audio; a chat template that puts it
        before would give rows different prefixes, hence the check.
        """
        prefixes = {tuple(self.prompt_ids(instruction)[0]) for instruction in instructions}
        return len(prefixes.pop()) if len(prefixes) == 1 else 0

    def next_token_loss(self, embeds, mask, labels, shared_prefix=0):
        """Mean cross-entropy over the answer tokens (``labels`` not ``IGNORE_INDEX``).

        With ``answer_only_lm_head`` the LLM's vocabulary projection runs only on the
        positions that predict an answer token (position t predicts token t + 1); the
        loss is the same token mean as transformers' causal-LM loss, computed in float32
        as transformers does. ``shared_prefix``: the first ``shared_prefix`` positions
        hold the same tokens in every row (see :meth:`shared_prefix_length`); with
        ``pack_rows`` they enter the packed sequence once (:meth:`_packed_llm_inputs`).
        """
        if not self.answer_only_lm_head:
            return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        if self.pack_rows:
            packed, attention, positions, keep, targets = self._packed_llm_inputs(
                embeds, mask, labels, shared_prefix)
            logits = self.llm(inputs_embeds=packed, attention_mask=attention,
                              position_ids=positions, logits_to_keep=keep,
                              use_cache=False).logits
        else:
            predicting = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
            start, end = int(predicting.min()), int(predicting.max()) + 1
            keep = torch.arange(start, end, device=labels.device)
            logits = self.llm(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep,
                              use_cache=False).logits
            targets = labels[:, start + 1:end + 1]
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                           targets.reshape(-1), ignore_index=IGNORE_INDEX)

    def _packed_llm_inputs(self, embeds, mask, labels, shared_prefix):
        """The right-padded batch as one packed sequence for the LLM.

        Layout: the shared prefix once, then each row's remaining positions, no padding.
        Written here because transformers packs sequences only through its data
        collators (flash-attention varlen), not with a prefix shared by the rows.

        Returns
        -------
        packed : torch.Tensor
            ``[1, N, H]`` input embeddings.
        attention : torch.Tensor
            ``[1, 1, N, N]`` additive mask (0: may attend; the dtype's minimum: may
            not): a position attends to the earlier positions of the prefix and of its
            own row.
        positions : torch.Tensor
            ``[1, N]`` each position's index within its own (unpacked) row.
        keep : torch.Tensor
            Packed positions that predict an answer token, row after row.
        targets : torch.Tensor
            The answer tokens they predict.
        """
        device = embeds.device
        lengths = mask.sum(dim=1).tolist()  # right padding: row i holds [0, lengths[i])
        answers = [(labels[row, :length] != IGNORE_INDEX).nonzero().squeeze(1)
                   for row, length in enumerate(lengths)]
        # the prefix is shared only if no row predicts an answer token from inside it
        prefix = shared_prefix if shared_prefix <= min(int(a[0]) for a in answers) - 1 else 0
        segments, positions, owners, keep, targets = [embeds[0, :prefix]], [], [], [], []
        positions.append(torch.arange(prefix, device=device))
        owners.append(torch.zeros(prefix, dtype=torch.long, device=device))
        offset = prefix
        for row, (length, answer) in enumerate(zip(lengths, answers)):
            segments.append(embeds[row, prefix:length])
            positions.append(torch.arange(prefix, length, device=device))
            owners.append(torch.full((length - prefix,), row + 1, device=device))
            keep.append(offset + answer - 1 - prefix)
            targets.append(labels[row, answer])
            offset += length - prefix
        owners = torch.cat(owners)
        order = torch.arange(offset, device=device)
        allowed = (order[None, :] <= order[:, None]) & \
            ((owners[None, :] == 0) | (owners[None, :] == owners[:, None]))
        attention = torch.zeros(offset, offset, dtype=embeds.dtype, device=device)
        attention.masked_fill_(~allowed, torch.finfo(embeds.dtype).min)
        return (torch.cat(segments).unsqueeze(0), attention[None, None],
                torch.cat(positions).unsqueeze(0), torch.cat(keep), torch.cat(targets))

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, wav, wav_lens, instructions, max_new_tokens=64, return_selected=False,
                 base_feats=None, **generate_kwargs):
        """Greedy (by default) answers for a batch, left-padded.

        Arguments
        ---------
        wav, wav_lens : torch.Tensor
            Audio batch.
        instructions : list of str
        max_new_tokens : int
        return_selected : bool
            Also return the ``[B, n_routers]`` routing selections (or None).
        base_feats : list, optional
            Precomputed base-encoder features per clip (see :meth:`encode_features`).
        **generate_kwargs
            Passed to transformers' ``generate`` (e.g. ``num_beams``).

        Returns
        -------
        list of str (and the selections when ``return_selected``)
        """
        audio, token_lens, mowe = self.encode_audio(wav, wav_lens, base_feats)
        embeds, mask, _ = self.assemble(audio, token_lens, instructions, padding_side="left")
        settings = {"do_sample": False, "num_beams": 1}
        settings.update(generate_kwargs)
        ids = self.llm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            **settings,
        )
        texts = [text.strip() for text in
                 self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        if return_selected:
            return texts, (mowe.selected if mowe is not None else None)
        return texts
