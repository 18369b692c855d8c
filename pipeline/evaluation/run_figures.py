"""The figures of one training run's test split: confusion matrix and ROC curves, as PNGs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluation.plots import plot_confusion, plot_roc
from pipeline.evaluation.roc import roc_analysis

__all__ = ["CONFUSION_NAME", "ROC_NAME", "training_figures"]

CONFUSION_NAME, ROC_NAME = "confusion_matrix.png", "roc.png"


def training_figures(test: Mapping[str, Any], predictions_path: str | os.PathLike[str],
                     class_keys: Sequence[str], directory: str | os.PathLike[str]) -> list[Path]:
    """Draw the confusion matrix (from ``test``, a ``TestMetrics`` dict) and the ROC curves.

    ``predictions_path`` is the run's ``.npz`` (probabilities over ``class_keys``, labels).
    Returns the PNG paths written in ``directory``.
    """
    target = Path(directory)
    counts = np.asarray(test["confusion_matrix"], dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    errors = {"class_keys": test["class_keys"], "accuracy": test["window_accuracy"],
              "confusion": {"counts": counts.astype(int).tolist(),
                            "normalised": np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)}}
    paths = [plot_confusion(errors, target / CONFUSION_NAME)]
    with np.load(predictions_path) as saved:
        roc = roc_analysis(saved["probabilities"], saved["labels"], class_keys)
    paths.append(plot_roc(roc, target / ROC_NAME))
    return paths
