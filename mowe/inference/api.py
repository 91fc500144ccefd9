"""Use a trained MoWE AudioLLM: load it, ask it about audio.

:class:`AudioLLMInference` loads a packaged model folder (``python -m mowe pack``, or
stage 7 of a recipe) or a recipe's experiment folder of one system (its best checkpoint,
as ``recipes/decode.py`` picks it), and answers instructions about clips given as file
paths, waveforms with their sample rate, or lists of them. Lists are decoded in batches
(longest first, as ``recipes/decode.py`` does); the model is built so that a batch
decodes as its clips would one by one.

Example
-------
::

    from mowe.inference.api import AudioLLMInference
    model = AudioLLMInference.from_pretrained("exp/tiny_seed1234/packed/mowe")
    model.answer("clip.wav", "Transcribe the speech.")
    model.answer(["a.wav", (waveform, 8000)], "What emotion is expressed?",
                 return_selected=True)          # -> [Answer(text, selected), ...]
"""

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import torch

from mowe.inference import package_format as packaging
from mowe.data.audio import SAMPLE_RATE, AudioError, read_audio_file, waveform_to_mono

logger = logging.getLogger(__name__)

DECODING_DEFAULTS = {"max_new_tokens": 64, "num_beams": 1, "do_sample": False,
                     "temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.0}


@dataclass
class Answer:
    """One answer of the model.

    Attributes
    ----------
    text : str
        The generated answer.
    selected : list of int or None
        Weak encoder each router chose (in the order of ``routers``), or None for a
        model without a mixture.
    routers : list of str
        The router kinds (``indep``, ``dep``).
    """

    text: str
    selected: list = None
    routers: list = field(default_factory=list)


def check_decoding(options):
    """Validate decoding options; returns them with defaults filled.

    Raises
    ------
    ValueError
        An option of the wrong type or out of range (message names it).
    """
    out = dict(options)
    for key in ("max_new_tokens", "num_beams"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, not {value!r}")
    if not isinstance(out["do_sample"], bool):
        raise ValueError(f"do_sample must be true or false, not {out['do_sample']!r}")
    for key, low, high in (("temperature", 0.0, 100.0), ("top_p", 0.0, 1.0),
                           ("repetition_penalty", 0.0, 100.0)):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not low < value <= high:
            raise ValueError(f"{key} must be a number in ({low:g}, {high:g}], not {value!r}")
        out[key] = float(value)
    return out


def generate_kwargs(options):
    """transformers ``generate`` keyword arguments for decoding ``options``."""
    kwargs = {"num_beams": options["num_beams"], "do_sample": options["do_sample"]}
    if options["do_sample"]:
        kwargs.update(temperature=options["temperature"], top_p=options["top_p"])
    if options["repetition_penalty"] != 1.0:
        kwargs["repetition_penalty"] = options["repetition_penalty"]
    return kwargs


class AudioLLMInference:
    """A trained AudioLLM ready to answer questions about audio.

    Use :meth:`from_pretrained` rather than this constructor.

    Arguments
    ---------
    model : mowe.models.audio_llm.AudioLLM
        The model with its trained weights.
    info : dict
        Package metadata (``mowe_package.json``): decoding defaults, routers, sources.
    device : str
        Where to run (``cpu``, ``cuda:0``).
    batch_size : int
        Most clips per forward pass when answering lists.
    """

    def __init__(self, model, info, device="cpu", batch_size=8):
        self.model = model.to(device).eval()
        self.info = info
        self.device = device
        self.batch_size = int(batch_size)
        self.decoding = check_decoding({**DECODING_DEFAULTS, **info.get("decoding", {})})
        self.routers = list(model.mixture.router_kinds) if model.mixture is not None else []
        encoder = model.base_encoder
        limit = getattr(encoder, "max_mel_frames", None)
        self.max_audio_seconds = (limit * encoder.hop_length / SAMPLE_RATE) if limit else None

    @property
    def name(self):
        """A short name for the model (the package's, or its folder's)."""
        return self.info.get("name") or "mowe"

    @property
    def num_weak_encoders(self):
        """Size of the weak-encoder pool (0 without a mixture)."""
        return self.model.mixture.num_encoders if self.model.mixture is not None else 0

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path, device="cpu", sources=None, check_sources=True,
                        cache_dir=None, batch_size=None, trust_remote_code=False):
        """Load a packaged model folder or a recipe experiment folder.

        Arguments
        ---------
        path : str
            Packaged folder (``mowe_package.json`` + ``model.safetensors``) or experiment
            folder of one system (``exp/<tag>/<system>``: ``hyperparams.yaml`` + ``save/``).
        device : str
            ``cpu`` or a CUDA device.
        sources : dict, optional
            New locations of frozen models by spec key, e.g. ``{"llm_source": DIR}``.
        check_sources : bool
            Check the frozen models' weights against the SHA-256 recorded at packing.
        cache_dir : str, optional
            Writable folder for SpeechBrain's lobes (default: a per-user temp folder).
        batch_size : int, optional
            Clips per forward pass (default: the recipe's batch size, else 8).
        trust_remote_code : bool
            Build classes the folder's spec names beyond the toolkit's model classes and
            torch/SpeechBrain layers (only for folders whose code you trust: the spec is
            a program). By default such a spec is refused before anything in it runs
            (:mod:`mowe.inference.safe_spec`).

        Returns
        -------
        AudioLLMInference

        Raises
        ------
        FileNotFoundError
            ``path`` is neither kind of folder, or a frozen model folder is missing.
        mowe.provision.model_sources.SourceMismatchError
            A frozen model's weights differ from the ones it was trained on.
        mowe.inference.safe_spec.UntrustedSpecError
            The spec would run code it is not trusted to run.
        """
        start = time.time()
        path = os.path.abspath(os.path.expanduser(str(path)))
        cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), f"mowe-cache-{os.getuid()}")
        if packaging.is_package(path):
            model, info = cls._load_package(path, sources or {}, check_sources, cache_dir,
                                            trust_remote_code)
        elif packaging.is_experiment(path):
            model, info = cls._load_experiment(path, sources or {}, cache_dir,
                                               trust_remote_code)
        else:
            raise FileNotFoundError(
                f"{path} is neither a packaged MoWE model ({packaging.INFO_FILE} + "
                f"{packaging.WEIGHTS_FILE}) nor an experiment folder of one system "
                f"({packaging.SPEC_FILE} + save/, e.g. egs/synthetic/exp/<tag>/mowe)")
        batch_size = batch_size or info.get("batch_size") or 8
        logger.info("loaded %s in %.1f s", path, time.time() - start)
        return cls(model, info, device=device, batch_size=batch_size)

    @staticmethod
    def _build(spec_text, overrides, cache_dir, origin, trust_remote_code):
        hparams = packaging.load_spec(spec_text, {**overrides, packaging.CACHE_KEY: cache_dir},
                                      origin, trust_remote_code)
        return hparams["model"]

    @classmethod
    def _load_experiment(cls, exp_dir, sources, cache_dir, trust_remote_code=False):
        from mowe.train.checkpoints import AtomicCheckpointer

        spec_text, top = packaging.spec_from_experiment(exp_dir)
        model = cls._build(spec_text, sources, cache_dir,
                           os.path.join(exp_dir, packaging.SPEC_FILE), trust_remote_code)
        checkpointer = AtomicCheckpointer(os.path.join(exp_dir, "save"),
                                          recoverables={"model": model})
        checkpoint = checkpointer.recover_if_possible(min_key="loss")
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint in {exp_dir}/save: train first")
        info = {"name": os.path.basename(exp_dir), "spec": spec_text,
                "checkpoint": {"path": str(checkpoint.path),
                               "meta": {k: v for k, v in checkpoint.meta.items()
                                        if isinstance(v, (int, float, str, bool))}},
                "decoding": {"max_new_tokens": int(top.get("max_new_tokens") or 64)},
                "batch_size": top.get("batch_size"),
                "max_duration": top.get("max_duration")}
        return model, info

    @classmethod
    def _load_package(cls, folder, sources, check_sources, cache_dir, trust_remote_code=False):
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        from mowe.inference.safe_spec import check_spec
        from mowe.provision.model_sources import resolve_pinned_source

        info = packaging.read_info(folder)
        with open(os.path.join(folder, packaging.SPEC_FILE), encoding="utf-8") as handle:
            spec_text = handle.read()
        # refused before anything in the folder is used (the frozen models' search included)
        check_spec(spec_text, os.path.join(folder, packaging.SPEC_FILE), trust_remote_code)
        overrides = {}
        for key, record in info.get("sources", {}).items():
            given = sources.get(key) or packaging.locate_source(record, folder)
            if check_sources:
                overrides[key] = resolve_pinned_source(record, given)
            else:
                overrides[key] = given
        unknown = set(sources) - set(info.get("sources", {}))
        if unknown:
            raise ValueError(f"unknown source keys {sorted(unknown)}: this package's frozen "
                             f"models are {sorted(info.get('sources', {}))}")
        model = cls._build(spec_text, overrides, cache_dir,
                           os.path.join(folder, packaging.SPEC_FILE), trust_remote_code)
        weights = os.path.join(folder, packaging.WEIGHTS_FILE)
        model.load_trained_state(load_file(weights), weights)
        tokenizer_dir = os.path.join(folder, packaging.TOKENIZER_DIR)
        if os.path.isdir(tokenizer_dir):
            model.llm.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir,
                                                                local_files_only=True)
        info["spec"] = spec_text
        return model, info

    # ------------------------------------------------------------------ answering
    def load(self, audio, sample_rate=None, what=None):
        """One clip -> 16 kHz mono float32 tensor.

        ``audio`` is a file path, a waveform (numpy/torch, with ``sample_rate``), or a
        ``(waveform, sample_rate)`` pair.
        """
        if isinstance(audio, (str, os.PathLike)):
            signal = read_audio_file(os.fspath(audio), max_seconds=self.max_audio_seconds)
            what = what or os.fspath(audio)
        else:
            if isinstance(audio, tuple) and len(audio) == 2 and sample_rate is None:
                audio, sample_rate = audio
            if sample_rate is None:
                raise AudioError("a waveform needs its sample rate: pass sample_rate=... or "
                                 "a (waveform, sample_rate) pair")
            what = what or "waveform"
            signal = waveform_to_mono(audio, sample_rate, what=what,
                                      max_seconds=self.max_audio_seconds)
        seconds = signal.numel() / SAMPLE_RATE
        if self.max_audio_seconds and seconds > self.max_audio_seconds + 1e-6:
            raise AudioError(f"{what} lasts {seconds:.1f} s; this model's base encoder takes "
                             f"at most {self.max_audio_seconds:g} s")
        return signal

    def answer(self, audio, instruction, sample_rate=None, return_selected=False,
               batch_size=None, seed=None, **decoding):
        """Answer ``instruction`` about ``audio``.

        Arguments
        ---------
        audio : str, array, (array, int), or a list of them
            File path(s) (any format soundfile or ffmpeg reads, any rate), waveform(s)
            with ``sample_rate``, or ``(waveform, sample_rate)`` pairs.
        instruction : str or list of str
            One instruction for every clip, or one per clip.
        sample_rate : int, optional
            Rate of bare waveforms.
        return_selected : bool
            Return :class:`Answer` objects (text + the weak encoder each router chose)
            instead of strings.
        batch_size : int, optional
            Clips per forward pass (default: ``self.batch_size``).
        seed : int, optional
            Seed for sampling (``do_sample=True``).
        **decoding
            ``max_new_tokens``, ``num_beams``, ``do_sample``, ``temperature``, ``top_p``,
            ``repetition_penalty``; defaults from the package (greedy).

        Returns
        -------
        str or Answer, or a list of them for a list of clips.
        """
        single = not isinstance(audio, list)
        clips = [audio] if single else list(audio)
        instructions = [instruction] * len(clips) if isinstance(instruction, str) \
            else list(instruction)
        if len(instructions) != len(clips):
            raise ValueError(f"{len(clips)} clips but {len(instructions)} instructions")
        if not all(isinstance(text, str) for text in instructions):
            raise ValueError("instructions must be strings")
        signals = [self.load(clip, sample_rate) for clip in clips]
        answers = self.answer_signals(signals, instructions, batch_size=batch_size, seed=seed,
                                      **decoding)
        if not return_selected:
            answers = [item.text for item in answers]
        return answers[0] if single else answers

    def answer_signals(self, signals, instructions, batch_size=None, seed=None, **decoding):
        """Answer about 16 kHz mono tensors (already loaded); returns :class:`Answer` s.

        Clips are decoded longest first in batches of ``batch_size``; the answers come
        back in the input order.
        """
        unknown = set(decoding) - set(DECODING_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown decoding options {sorted(unknown)}; "
                             f"known: {sorted(DECODING_DEFAULTS)}")
        options = check_decoding({**self.decoding, **decoding})
        if seed is not None:
            torch.manual_seed(seed)
        batch_size = int(batch_size or self.batch_size)
        order = sorted(range(len(signals)), key=lambda i: -signals[i].numel())
        answers = [None] * len(signals)
        for first in range(0, len(order), batch_size):
            chunk = order[first:first + batch_size]
            longest = max(signals[i].numel() for i in chunk)
            wavs = torch.zeros(len(chunk), longest)
            for row, index in enumerate(chunk):
                wavs[row, :signals[index].numel()] = signals[index]
            lens = torch.tensor([signals[i].numel() / longest for i in chunk])
            with torch.no_grad():
                texts, selected = self.model.generate(
                    wavs.to(self.device), lens.to(self.device),
                    [instructions[i] for i in chunk], max_new_tokens=options["max_new_tokens"],
                    return_selected=True, **generate_kwargs(options))
            for row, index in enumerate(chunk):
                answers[index] = Answer(
                    texts[row], selected[row].tolist() if selected is not None else None,
                    list(self.routers))
        return answers
