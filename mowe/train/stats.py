"""Running statistics for training logs: loss parts and routing choices per task.

Example
-------
>>> import torch
>>> stats = RoutingStatistics()
>>> stats.update(["asr", "asr", "er"], torch.tensor([[0, 1], [0, 2], [0, 2]]))
>>> stats.proportions("asr", router=1)
{1: 0.5, 2: 0.5}
"""

from collections import defaultdict

import torch


class LossPartsTracker:
    """Mean of named scalar loss parts over the batches of a stage."""

    def __init__(self):
        self.sums = defaultdict(float)
        self.count = 0

    def update(self, parts):
        """Add one batch's parts (tensors or floats)."""
        for name, value in parts.items():
            self.sums[name] += float(value)
        self.count += 1

    def averages(self):
        """Name -> mean over the batches seen (empty before any batch)."""
        return {name: total / self.count for name, total in self.sums.items()} if self.count else {}


class RoutingStatistics:
    """Counts of the weak encoder each router selected, per task.

    ``counts[task][router][encoder]`` is the number of samples of ``task`` for which
    router ``router`` (its index in the mixture's ``routers`` list) picked ``encoder``.
    """

    def __init__(self):
        self.counts = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))

    def update(self, tasks, selected):
        """Add a batch: ``tasks`` (list of str) and ``selected`` ``[B, n_routers]``."""
        if isinstance(tasks, str):
            tasks = [tasks] * selected.shape[0]
        for task, row in zip(tasks, torch.as_tensor(selected).tolist()):
            for router, encoder in enumerate(row):
                self.counts[task][router][encoder] += 1

    def proportions(self, task, router):
        """Encoder -> share of ``task``'s samples routed to it by ``router``."""
        counts = self.counts[task][router]
        total = sum(counts.values())
        return {encoder: count / total for encoder, count in sorted(counts.items())} if total else {}

    def to_dict(self):
        """Plain nested dict (JSON-ready): task -> router -> encoder -> count."""
        return {task: {str(r): {str(e): c for e, c in sorted(enc.items())}
                       for r, enc in routers.items()}
                for task, routers in sorted(self.counts.items())}


class ExpertUsage:
    """Audio tokens each MoE-adapter expert received, per task.

    Example
    -------
    >>> usage = ExpertUsage()
    >>> usage.update(["asr", "er"], torch.tensor([[3, 1], [0, 4]]))
    >>> usage.shares("asr")
    {0: 0.75, 1: 0.25}
    """

    def __init__(self):
        self.counts = defaultdict(lambda: defaultdict(int))

    def update(self, tasks, expert_counts):
        """Add a batch: ``tasks`` (list of str) and ``expert_counts`` ``[B, E]``."""
        for task, row in zip(tasks, torch.as_tensor(expert_counts).tolist()):
            for expert, count in enumerate(row):
                self.counts[task][expert] += int(count)

    def shares(self, task):
        """Expert -> share of ``task``'s routed tokens."""
        counts = self.counts[task]
        total = sum(counts.values())
        return {e: c / total for e, c in sorted(counts.items())} if total else {}

    def to_dict(self):
        """task -> expert -> token count (JSON-ready)."""
        return {task: {str(e): c for e, c in sorted(experts.items())}
                for task, experts in sorted(self.counts.items())}
