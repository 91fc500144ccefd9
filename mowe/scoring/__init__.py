"""Scoring: AudioBench-comparable metrics, deterministic metrics and an LLM judge.

See :mod:`mowe.scoring.task_metrics` for the per-task metrics, :mod:`mowe.scoring.judge` for
the model-as-judge, and ``python -m mowe.scoring --help`` for the command line.
"""

from mowe.scoring.task_metrics import PRIMARY, read_hypotheses, score_rows

__all__ = ["PRIMARY", "read_hypotheses", "score_rows"]
