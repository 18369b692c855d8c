"""PNG figures of feature importance and correlation (matplotlib, Agg canvas, no pyplot)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.errors import InvalidInput

__all__ = ["plot_correlation", "plot_importance"]

# Figures are built on an explicit Agg canvas instead of through pyplot: no global backend
# is chosen at import, nothing needs a display, and no figure outlives its function (pyplot
# keeps every figure alive until closed, a leak in a long-running worker).


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``figure`` to ``path`` as PNG, creating the folder; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(target, format="png", dpi=110)
    return target


def plot_importance(
    importance: Mapping[str, Sequence[tuple[str, float]]],
    path: str | os.PathLike[str],
    top: int = 20,
) -> Path:
    """Horizontal bar chart per method of the ``top`` features, as from ``compute_importance``.

    Raises:
        InvalidInput: no method to draw, or ``top`` < 1.
    """
    if not importance or top < 1:
        raise InvalidInput("plot_importance needs at least one method and top ≥ 1")
    figure = Figure(figsize=(5 * len(importance), max(3.0, 0.3 * top + 1)), layout="constrained")
    axes = figure.subplots(1, len(importance), squeeze=False)[0]
    for ax, (method, ranked) in zip(axes, importance.items()):
        shown = list(ranked)[:top][::-1]
        ax.barh([name for name, _ in shown], [score for _, score in shown], color="tab:blue")
        ax.set_title(method.replace("_", " "))
        ax.set_xlabel("importance")
        ax.tick_params(axis="y", labelsize=8)
    return _save(figure, path)


def plot_correlation(
    matrix: np.ndarray, names: Sequence[str], path: str | os.PathLike[str]
) -> Path:
    """Heat map of a correlation matrix (from ``correlation``) on a fixed [-1, 1] scale.

    Raises:
        InvalidInput: the matrix is not square or does not match ``names``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != (len(names), len(names)):
        raise InvalidInput(f"matrix {matrix.shape} does not match {len(names)} names")
    size = max(4.0, 0.25 * len(names) + 2)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="coolwarm", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    figure.colorbar(image, ax=ax, label="Pearson r")
    return _save(figure, path)
