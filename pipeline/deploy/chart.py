"""The benchmark chart: latency per window by batch size, and size and accuracy per variant.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global state, safe in
worker threads) and written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_path

__all__ = ["save_chart"]


def save_chart(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw ``BenchmarkResult.to_dict()`` as a PNG at ``path``; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variants = result["variants"]
    sizes = result["batch_sizes"]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    latency_ax, size_ax = figure.subplots(1, 2, width_ratios=[3, 2])
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(sizes))
    for i, variant in enumerate(variants):
        per_window = [s["p50_ms"] / s["batch_size"] for s in variant["latency"]]
        latency_ax.bar(
            x + (i - (len(variants) - 1) / 2) * width, per_window, width, label=variant["name"]
        )
    latency_ax.set_xticks(x, [f"batch {b}" for b in sizes])
    latency_ax.set_ylabel("p50 latency per window (ms)")
    latency_ax.set_title(f"Latency ({result['threads']} thread(s))")
    latency_ax.legend(fontsize="small")
    names = [v["name"] for v in variants]
    megabytes = [v["size_bytes"] / 1e6 for v in variants]
    bars = size_ax.bar(names, megabytes, color="tab:gray")
    for bar, variant in zip(bars, variants, strict=True):
        size_ax.annotate(
            f"acc {variant['accuracy']:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    size_ax.set_ylabel("file size (MB)")
    size_ax.set_title("Size and test accuracy")
    size_ax.tick_params(axis="x", labelrotation=30)
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return target
