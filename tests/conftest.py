"""Shared fixtures: tiny random Hugging Face models saved to a temp dir, and the
AudioLLM built from the real YAML spec through ``from_pretrained``."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_YAML = os.path.join(REPO, "recipes", "conf", "model", "audio_llm.yaml")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of a tiny random Whisper and a tiny random Llama (with tokenizer)."""
    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "whisper": make_tiny_whisper(str(root / "whisper")),
        "llama": make_tiny_llama(str(root / "llama"), initializer_range=0.3),
        "cache": str(root / "cache"),
    }


def tiny_overrides(tiny_models, **extra):
    """Overrides that shrink the YAML spec to the tiny models."""
    overrides = {
        "base_encoder_source": tiny_models["whisper"],
        "llm_source": tiny_models["llama"],
        "pretrained_cache": tiny_models["cache"],
        "num_audio_tokens": 8,
        "frames_per_token": 2,
        "adapter_dim": 32,
        "weak_encoder_dim": 16,
        "weak_encoder_heads": 2,
        "weak_encoder_layers": 1,
        "lora_rank": 16,
        "lora_targets": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
    }
    overrides.update(extra)
    return overrides


def load_spec(tiny_models, yaml_overrides="", **extra):
    """Load the model YAML with tiny overrides; returns the hparams dict.

    ``yaml_overrides`` is YAML text (as on a command line), for values with tags.
    """
    import yaml
    from hyperpyyaml import load_hyperpyyaml

    overrides = yaml.safe_dump(tiny_overrides(tiny_models, **extra)) + yaml_overrides
    with open(MODEL_YAML, encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, overrides)


@pytest.fixture
def audio_batch():
    """Three clips of different lengths, with instructions and answers."""
    generator = torch.Generator().manual_seed(0)
    wav = torch.randn(3, 16000, generator=generator) * 0.1
    wav_lens = torch.tensor([1.0, 0.6, 0.35])
    for row, rel in zip(wav, wav_lens):
        row[int(rel * wav.shape[1]):] = 0
    instructions = ["Transcribe the speech.", "What emotion is expressed?", "How many tones?"]
    answers = ["hello world", "joy", "three"]
    return wav, wav_lens, instructions, answers


RECIPE = os.path.join(REPO, "egs", "synthetic")


def load_train_module():
    """recipes/train.py as a module (its helpers, without running it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mowe_recipe_train",
                                                  os.path.join(REPO, "recipes", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(*args, **env_vars):
    """Run egs/synthetic/run.sh with this interpreter (``env_vars`` added to its
    environment); return its stdout."""
    import subprocess
    import sys

    env = dict(os.environ, MOWE_PYTHON=sys.executable, HF_HUB_OFFLINE="1", **env_vars)
    result = subprocess.run(["bash", "run.sh", *args], cwd=RECIPE, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="session")
def tiny_run():
    """egs/synthetic at --size tiny, all stages, once per session: (exp folder, stdout)."""
    import shutil

    tag = "pytest_tiny"
    shutil.rmtree(os.path.join(RECIPE, "exp", tag), ignore_errors=True)
    # one CPU thread per training, whatever the machine's cores (a tiny training's
    # numbers depend on the thread count; the Slurm test compares against this run)
    output = run_recipe("--size", "tiny", "--tag", tag, OMP_NUM_THREADS="1")
    return os.path.join(RECIPE, "exp", tag), output


def drop_unimportable_lazy_modules():
    """Remove SpeechBrain's lazy modules whose import fails from ``sys.modules``.

    Hypothesis scans every module in ``sys.modules`` for constants, reading ``__file__``;
    on SpeechBrain's lazy modules that triggers their import, and those of optional
    dependencies that are not installed (e.g. ``speechbrain.integrations.k2_fsa``)
    raise ImportError inside Hypothesis. They are unusable here anyway.
    """
    import sys
    import warnings

    for name, module in list(sys.modules.items()):
        if type(module).__name__ not in ("LazyModule", "DeprecatedModuleRedirect"):
            continue
        try:
            with warnings.catch_warnings():  # deprecated aliases warn when resolved
                warnings.simplefilter("ignore")
                getattr(module, "__file__", None)
        except ImportError:
            del sys.modules[name]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Mark every test under tests/integration/ ``slow``; and, before Hypothesis' own
    collection hook scans the imported modules, drop SpeechBrain's unimportable ones."""
    integration = os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration")
    for item in items:
        if str(item.path).startswith(integration + os.sep):
            item.add_marker(pytest.mark.slow)
    drop_unimportable_lazy_modules()


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory):
    """A tiny system trained by recipes/train.py, decoded by recipes/decode.py and packed
    by ``python -m mowe.inference.pack``: a dict with ``pretrained``, ``data`` (manifests),
    ``exp`` (experiment folder), ``package`` (packed folder), ``hyps`` (decode.py rows)."""
    import json
    import subprocess
    import sys

    import numpy as np
    import soundfile

    from mowe.utils.tiny_models import make_tiny_llama, make_tiny_whisper

    root = tmp_path_factory.mktemp("tiny_package")
    pretrained, data, exp = root / "pretrained", root / "data", root / "exp" / "mowe"
    make_tiny_whisper(str(pretrained / "whisper-tiny.en"))
    make_tiny_llama(str(pretrained / "smollm2-135m-instruct"), initializer_range=0.3)
    data.mkdir()
    tasks = [("asr", "Transcribe the speech.", "hello world"),
             ("er", "What emotion is expressed?", "joy"),
             ("aqa", "How many beeps?", "two")]
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("valid", 2), ("test", 6)):
        entries = {}
        for index in range(count):
            task, instruction, answer = tasks[index % 3]
            samples = 4000 + 1200 * index
            wav = data / f"{split}_{index}.wav"
            soundfile.write(wav, (0.1 * rng.standard_normal(samples)).astype("float32"),
                            16000)
            entries[f"{split}_{index:02d}"] = {"wav": str(wav), "duration": samples / 16000,
                                               "task": task, "instruction": instruction,
                                               "answer": answer}
        (data / f"{split}.json").write_text(json.dumps(entries))
    config = os.path.join(REPO, "egs", "synthetic", "conf", "train.yaml")
    common = [config, f"--output_folder={exp}", f"--data_folder={data}",
              f"--pretrained_dir={pretrained}", "--batch_size=2", "--max_new_tokens=6",
              "--seed=7"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO)
    for command in ([os.path.join(REPO, "recipes", "train.py"), *common,
                     "--number_of_epochs=1", "--global_batch_size=2"],
                    [os.path.join(REPO, "recipes", "decode.py"), *common]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                                cwd=str(root), env=env, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    package = root / "packed" / "mowe"
    result = subprocess.run([sys.executable, "-m", "mowe.inference.pack", "--exp_dir", str(exp),
                             "--out", str(package), "--license", "apache-2.0",
                             "--dataset", "tiny-test"], capture_output=True, text=True,
                            cwd=str(root), env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(exp / "hyps.jsonl", encoding="utf-8") as handle:
        hyps = [json.loads(line) for line in handle]
    manifest = json.loads((data / "test.json").read_text())
    for row in hyps:
        row["wav"] = manifest[row["id"]]["wav"]
    return {"root": root, "pretrained": pretrained, "data": data, "exp": exp,
            "package": package, "hyps": hyps, "pack_log": result.stderr}


def padded_batch(audio_batch, tasks=("asr", "er", "aqa")):
    """The ``audio_batch`` fixture as a SpeechBrain PaddedBatch of clips."""
    from speechbrain.dataio.batch import PaddedBatch

    wav, wav_lens, instructions, answers = audio_batch
    rows = []
    for i in range(wav.shape[0]):
        length = int(round(float(wav_lens[i]) * wav.shape[1]))
        rows.append({"id": f"utt{i}", "sig": wav[i, :length], "task": tasks[i],
                     "instruction": instructions[i], "answer": answers[i]})
    return PaddedBatch(rows)


def make_brain(model, tmp_path=None, **hparams):
    """A MoWEBrain on the CPU around ``model`` (Adam at 1e-2), with a checkpointer under
    ``tmp_path`` if given."""
    import speechbrain as sb
    import torch

    from mowe.train.brain import MoWEBrain

    checkpointer = None
    if tmp_path is not None:
        checkpointer = sb.utils.checkpoints.Checkpointer(str(tmp_path / "ckpt"),
                                                         recoverables={"model": model})
    settings = {"mowe_loss_weight": 0.1}
    settings.update(hparams)
    return MoWEBrain(modules={"model": model},
                     opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
                     hparams=settings, run_opts={"device": "cpu"}, checkpointer=checkpointer)


def noise_manifest(folder, count, seed):
    """A manifest of ``count`` noise clips (alternately ASR and ER) under ``folder``."""
    import json

    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    entries = {}
    for i in range(count):
        path = folder / f"clip{seed}_{i}.wav"
        samples = int(rng.integers(4000, 12000))
        soundfile.write(path, (rng.standard_normal(samples) * 0.1).astype("float32"), 16000)
        task = ["asr", "er"][i % 2]
        entries[f"s{seed}_{i}"] = {"wav": str(path), "duration": samples / 16000, "task": task,
                                   "instruction": "Transcribe." if task == "asr" else "Emotion?",
                                   "answer": "hello" if task == "asr" else "joy"}
    path = folder / f"manifest{seed}.json"
    path.write_text(json.dumps(entries))
    return str(path)
