"""Charts drawn on the server with matplotlib, as PNG bytes (no script from elsewhere in the page)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["training_curve_png"]


def training_curve_png(history: list[dict[str, Any]]) -> bytes:
    """Loss and accuracy per epoch (train and validation) as a PNG; an empty history draws empty axes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "acc")):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}") for row in history]
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                axes.plot(*zip(*points), marker="o", label=split)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title("loss" if metric == "loss" else "accuracy")
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
