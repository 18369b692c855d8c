"""PNG figures of evaluations (matplotlib object API on an Agg canvas, written atomically).

No pyplot: no global backend is chosen at import, nothing needs a display, and no figure
outlives its function (pyplot keeps figures alive until closed: a leak in a worker). Each
PNG is rendered to a temporary file and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.artifacts import atomic_path
from pipeline.errors import InvalidInput

__all__ = ["plot_comparison", "plot_confusion", "plot_robustness", "plot_roc"]


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    FigureCanvasAgg(figure)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return target


def plot_roc(roc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Every class's ROC curve plus the micro and macro averages (from ``roc_analysis``)."""
    figure = Figure(figsize=(7, 6), layout="constrained")
    ax = figure.subplots()
    for key, curve in roc["classes"].items():
        if curve["auc"] is not None:
            ax.plot(curve["fpr"], curve["tpr"], linewidth=1, label=f"{key} ({curve['auc']:.3f})")
    for name, style in (("micro", ":"), ("macro", "--")):
        curve = roc[name]
        ax.plot(curve["fpr"], curve["tpr"], style, color="black", linewidth=2,
                label=f"{name} average ({curve['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title="One-vs-rest ROC (AUC)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(figure, path)


def plot_confusion(errors: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """The row-normalised confusion matrix with the counts written in each cell."""
    keys = list(errors["class_keys"])
    counts = np.asarray(errors["confusion"]["counts"])
    normalised = np.asarray(errors["confusion"]["normalised"], dtype=float)
    if counts.shape != (len(keys), len(keys)):
        raise InvalidInput(f"confusion matrix {counts.shape} does not match {len(keys)} classes")
    size = max(4.0, 0.6 * len(keys) + 2)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    for (t, p), n in np.ndenumerate(counts):
        if n:
            ax.text(p, t, str(n), ha="center", va="center", fontsize=7,
                    color="white" if normalised[t, p] > 0.5 else "black")
    ax.set_xticks(range(len(keys)), keys, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion (accuracy {errors['accuracy']:.3f})")
    figure.colorbar(image, ax=ax, label="fraction of the true class")
    return _save(figure, path)


def plot_comparison(comparison: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Accuracy against latency per model, the Pareto front joined by a line."""
    models = comparison["models"]
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    for model in models:
        ax.scatter(model["latency_ms"], model["accuracy"] or 0.0, s=40)
        ax.annotate(f"{model['experiment_id']} ({model['model_key']})", (model["latency_ms"], model["accuracy"] or 0.0),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    by_id = {m["experiment_id"]: m for m in models}
    front = [by_id[i] for i in comparison["pareto_front"]]
    ax.plot([m["latency_ms"] for m in front], [m["accuracy"] or 0.0 for m in front], "--", color="tab:red",
            label="Pareto front")
    ax.set(xlabel="latency per window (ms)", ylabel="test accuracy", title="Accuracy against latency")
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_robustness(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Accuracy against SNR, overall (thick) and per class, with the clean accuracy to the right."""
    levels = sorted(report["levels"], key=lambda level: level["snr_db"])
    snrs = [level["snr_db"] for level in levels]
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    for key, clean in report["clean"]["by_class"].items():
        if clean is not None:
            ax.plot(snrs, [level["by_class"][key] for level in levels], marker=".", linewidth=0.8, label=key)
    ax.plot(snrs, [level["accuracy"] for level in levels], marker="o", color="black", linewidth=2.5, label="all")
    ax.axhline(report["clean"]["accuracy"], color="grey", linestyle=":", label="clean")
    ax.set(xlabel="SNR (dB)", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy under white noise")
    ax.legend(fontsize=7)
    return _save(figure, path)
