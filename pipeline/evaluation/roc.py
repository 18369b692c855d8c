"""One-vs-rest ROC curves per class, micro and macro averages, and their AUC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput

__all__ = ["MAX_CURVE_POINTS", "check_predictions", "roc_analysis"]

# Points kept per curve in the result: enough to draw it, small enough for a job result.
# AUCs are always computed on the full curves.
MAX_CURVE_POINTS = 100


def check_predictions(
    probabilities: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``[n, C]`` probabilities and ``[n]`` labels; return them as float64 / int64.

    Raises:
        InvalidInput: wrong shapes, an empty set, non-finite values or labels outside
            ``[0, num_classes)``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] != num_classes:
        raise InvalidInput(f"probabilities must be [n > 0, {num_classes}], got shape {probs.shape}")
    if y.shape != (probs.shape[0],):
        raise InvalidInput(f"labels must have shape ({probs.shape[0]},), got {y.shape}")
    if not np.isfinite(probs).all():
        raise InvalidInput("probabilities hold NaN or inf")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise InvalidInput(f"labels must be integers in [0, {num_classes})")
    return probs, y.astype(np.int64)


def _thin(fpr: np.ndarray, tpr: np.ndarray, max_points: int) -> dict[str, list[float]]:
    """The curve with at most ``max_points`` points, ends kept, values rounded for JSON."""
    if fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}


def roc_analysis(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_keys: Sequence[str],
    max_points: int = MAX_CURVE_POINTS,
) -> dict[str, Any]:
    """One-vs-rest ROC per class, micro and macro averages, and the AUC of each (JSON-safe).

    Only the classes present in ``labels`` have a curve (a 3-class dataset gives 3, whatever
    the model's output count); the others are listed in ``skipped``. The micro average pools
    every (window, present class) decision, so the columns of absent classes, all negatives,
    cannot inflate it; the macro curve is the mean of the per-class TPRs interpolated on the
    union of their FPRs, and ``macro_auc`` the mean of the per-class AUCs (both as
    scikit-learn documents them).

    Returns:
        ``{"classes": {key: {"auc", "fpr", "tpr", "support"}}, "micro": {...},
        "macro": {...}, "micro_auc", "macro_auc", "skipped", "n_windows"}``.

    Raises:
        InvalidInput: see ``check_predictions``; fewer than two classes present.
    """
    from sklearn.metrics import auc, roc_curve

    keys = list(class_keys)
    probs, y = check_predictions(probabilities, labels, len(keys))
    if np.unique(y).size < 2:
        raise InvalidInput("ROC needs windows of at least two classes in the labels")
    present = sorted(set(y.tolist()))
    onehot = np.eye(len(keys), dtype=np.int64)[y][:, present]
    probs = probs[:, present]
    classes: dict[str, Any] = {}
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    for column, index in enumerate(present):
        fpr, tpr, _ = roc_curve(onehot[:, column], probs[:, column])
        curves.append((fpr, tpr))
        classes[keys[index]] = {"auc": float(auc(fpr, tpr)), **_thin(fpr, tpr, max_points),
                                "support": int(onehot[:, column].sum())}
    skipped = [key for index, key in enumerate(keys) if index not in set(present)]

    micro_fpr, micro_tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
    aucs = [curve["auc"] for curve in classes.values()]
    return {
        "classes": classes,
        "micro": {"auc": float(auc(micro_fpr, micro_tpr)), **_thin(micro_fpr, micro_tpr, max_points)},
        "macro": {"auc": float(auc(grid, mean_tpr)), **_thin(grid, mean_tpr, max_points)},
        "micro_auc": float(auc(micro_fpr, micro_tpr)),
        "macro_auc": float(np.mean(aucs)),
        "skipped": skipped,
        "n_windows": len(y),
    }
