"""The offline synthetic 5-task corpus: ``python -m mowe synth --out DIR --size tiny``."""

from mowe.synth.corpus import SIZES, TASKS, generate_corpus

__all__ = ["SIZES", "TASKS", "generate_corpus"]
