"""Feature importance (mutual information, random-forest impurity, permutation) and correlation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.inspection import permutation_importance
from sklearn.model_selection import train_test_split

from pipeline.errors import InvalidInput
from pipeline.features.selection import _check_xy

__all__ = ["IMPORTANCE_METHODS", "compute_importance", "correlation"]

IMPORTANCE_METHODS: tuple[str, ...] = ("mutual_info", "random_forest", "permutation")


def _ranked(names: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """``(name, score)`` pairs, highest score first (ties keep column order)."""
    order = np.argsort(-scores, kind="stable")
    return [(names[i], float(scores[i])) for i in order]


def compute_importance(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    methods: Sequence[str] = IMPORTANCE_METHODS,
    random_state: int = 0,
) -> dict[str, list[tuple[str, float]]]:
    """Rank features by each requested method.

    ``mutual_info``: ``mutual_info_classif`` on all rows. ``random_forest``: impurity
    (mean decrease in Gini) of a 100-tree forest fitted on a stratified 75 % of the rows.
    ``permutation``: mean drop in accuracy of that forest on the held-out 25 % when a
    column is shuffled (5 repeats) — measured on rows the forest never saw, so it is not
    inflated by overfitting.

    Returns:
        ``{method: [(name, score), ...]}`` sorted by descending score.

    Raises:
        InvalidInput: unknown method, names not matching the columns, bad shapes.
    """
    unknown = [m for m in methods if m not in IMPORTANCE_METHODS]
    if unknown or not methods:
        raise InvalidInput(
            f"unknown importance method(s) {unknown or '(none given)'}; "
            f"valid: {', '.join(IMPORTANCE_METHODS)}"
        )
    X, y = _check_xy(X, y)
    names = list(names)
    if len(names) != X.shape[1]:
        raise InvalidInput(f"{len(names)} names for {X.shape[1]} columns")

    result: dict[str, list[tuple[str, float]]] = {}
    if "mutual_info" in methods:
        result["mutual_info"] = _ranked(names, mutual_info_classif(X, y, random_state=random_state))
    if {"random_forest", "permutation"} & set(methods):
        # Stratify when every class can appear on both sides; otherwise a plain split.
        counts = np.unique(y, return_counts=True)[1]
        can_stratify = counts.min() >= 2 and len(y) // 4 >= len(counts)
        X_fit, X_held, y_fit, y_held = train_test_split(
            X, y, test_size=0.25, random_state=random_state, stratify=y if can_stratify else None
        )
        forest = RandomForestClassifier(n_estimators=100, random_state=random_state, n_jobs=1)
        forest.fit(X_fit, y_fit)
        if "random_forest" in methods:
            result["random_forest"] = _ranked(names, forest.feature_importances_)
        if "permutation" in methods:
            permuted = permutation_importance(
                forest, X_held, y_held, n_repeats=5, random_state=random_state, n_jobs=1
            )
            result["permutation"] = _ranked(names, permuted.importances_mean)
    return {m: result[m] for m in methods}


def correlation(
    X: np.ndarray, names: Sequence[str], threshold: float = 0.9
) -> tuple[np.ndarray, list[tuple[str, str, float]]]:
    """Pearson correlation between columns and the pairs correlated beyond ``threshold``.

    A constant column has no defined correlation; it is reported as 0 with every other
    column (and 1 with itself), so the matrix is always finite.

    Returns:
        ``(matrix [k, k], [(name_a, name_b, r), ...])`` with ``|r| ≥ threshold``, ``a``
        before ``b`` in column order, sorted by descending ``|r|``.

    Raises:
        InvalidInput: threshold outside [0, 1], names not matching the columns.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"correlation threshold must be in [0, 1], got {threshold}")
    X = np.asarray(X, dtype=np.float64)
    names = list(names)
    if X.ndim != 2 or X.shape[1] != len(names) or X.shape[0] < 2:
        raise InvalidInput(f"X of shape {X.shape} does not match {len(names)} names")
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(X, rowvar=False)
    matrix = np.nan_to_num(np.atleast_2d(matrix), nan=0.0)
    np.fill_diagonal(matrix, 1.0)
    rows, cols = np.triu_indices(len(names), k=1)
    strong = np.abs(matrix[rows, cols]) >= threshold
    pairs = [(names[i], names[j], float(matrix[i, j])) for i, j in zip(rows[strong], cols[strong])]
    pairs.sort(key=lambda pair: -abs(pair[2]))
    return matrix, pairs
