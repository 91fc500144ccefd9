"""Routing shares of a MoWE system's test clips and their plot (the paper's Fig. 2)."""

import json
import os
from collections import Counter, defaultdict


def routing_shares(hyp_file, router="dep"):
    """task -> {encoder: share of clips} for the first ``router`` (data-dependent by
    default) of a MoWE system's ``hyps.jsonl``, or None when it has no such router."""
    if not os.path.isfile(hyp_file):
        return None
    counts = defaultdict(Counter)
    with open(hyp_file, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if not row.get("selected") or router not in row.get("routers", []):
                return None
            counts[row["task"]][row["selected"][row["routers"].index(router)]] += 1
    return {task: {enc: n / sum(c.values()) for enc, n in sorted(c.items())}
            for task, c in sorted(counts.items())}


def plot_routing(shares, path, title="Data-dependent router: encoder selected per task",
                 label="weak encoder", ylabel="share of test clips"):
    """Grouped bars: per task, the share of clips routed to each weak encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(shares)
    encoders = sorted({e for s in shares.values() for e in s})
    width = 0.8 / max(len(encoders), 1)
    figure, axis = plt.subplots(figsize=(1.6 * len(tasks) + 2, 3.5))
    for k, encoder in enumerate(encoders):
        axis.bar([t + k * width for t in range(len(tasks))],
                 [shares[task].get(encoder, 0.0) for task in tasks], width,
                 label=f"{label} {encoder}")
    axis.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], [t.upper() for t in tasks])
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
