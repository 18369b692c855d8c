"""Feature rankings as reports: importance, selection and correlation, JSON-safe, with their files.

Each function takes the rows to rank (``X [n, k]``, labels, column names) and a folder for
its files, and returns ``(result, plot_paths, artifact_path)``: a JSON-safe result, the
PNGs it drew by name, and the path of a file meant for reuse (the saved selection).
The PNGs are drawn to a temporary name and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.errors import InvalidInput

__all__ = ["check_importance_methods", "check_selection", "correlation_report", "importance_report",
           "selection_report"]

Report = tuple[dict[str, Any], dict[str, str], str | None]


def check_importance_methods(methods: Sequence[str] | None) -> None:
    """Raise ``InvalidInput`` naming any unknown importance method (``None``: all of them)."""
    from pipeline.features.importance import IMPORTANCE_METHODS

    unknown = sorted(set(methods or ()) - set(IMPORTANCE_METHODS))
    if unknown:
        raise InvalidInput(f"unknown importance method(s) {unknown}; valid: {', '.join(IMPORTANCE_METHODS)}")


def check_selection(method: str, k: int | None, n_features: int | None, threshold: float | None = None) -> None:
    """Raise ``InvalidInput`` unless ``method`` can keep ``k`` of ``n_features`` features.

    The same rules ``select_features`` applies, checked before any feature is computed;
    ``n_features`` None (not known yet) checks all but the upper bound on ``k``.
    """
    from pipeline.features.selection import METHODS

    if method not in METHODS:
        raise InvalidInput(f"unknown selection method {method!r}; valid: {', '.join(METHODS)}")
    if k is not None and k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    if k is not None and n_features is not None and k > n_features:
        raise InvalidInput(f"k={k} is more than the {n_features} features to select from")
    if k is None and method != "variance_threshold":
        raise InvalidInput(f"{method} needs k, the number of features to keep")
    if threshold is not None and method != "variance_threshold":
        raise InvalidInput("threshold applies to variance_threshold only")


def importance_report(
    X: np.ndarray, y: np.ndarray, names: Sequence[str], directory: str | os.PathLike[str], *,
    methods: Sequence[str] | None = None, random_state: int = 0, top: int = 20,
) -> Report:
    """Importance by each method (``compute_importance``) and a bar chart of the ``top`` features."""
    from pipeline.features.importance import IMPORTANCE_METHODS, compute_importance
    from pipeline.features.plots import plot_importance

    ranked = compute_importance(X, y, names, methods or IMPORTANCE_METHODS, random_state)
    plot = Path(directory) / "importance.png"
    with atomic_path(plot) as tmp:
        plot_importance(ranked, tmp, top=top)
    table = {method: [{"name": n, "score": s} for n, s in pairs] for method, pairs in ranked.items()}
    return {"importance": table}, {"importance": str(plot)}, None


def selection_report(
    X: np.ndarray, y: np.ndarray, names: Sequence[str], directory: str | os.PathLike[str], *,
    method: str, k: int | None, threshold: float | None = None, random_state: int = 0,
    provenance: dict[str, Any] | None = None,
) -> Report:
    """Select features (``select_features``) and save the selection for classical training."""
    from pipeline.evaluation.feature_sets import save_selection
    from pipeline.features.selection import select_features

    check_selection(method, k, len(names), threshold)
    if method == "variance_threshold":
        params: dict[str, Any] = {} if threshold is None else {"threshold": threshold}
    else:
        params = {"random_state": random_state}
    chosen = select_features(X, y, names, method, k, **params)
    path = save_selection(Path(directory) / "selection.json", chosen, names, provenance or {})
    result = {"method": chosen.method, "names": chosen.names, "indices": chosen.indices, "scores": chosen.scores}
    return result, {}, str(path)


def correlation_report(
    X: np.ndarray, names: Sequence[str], directory: str | os.PathLike[str], *, threshold: float = 0.9,
) -> Report:
    """Correlation matrix (rounded for JSON), the pairs with ``|r| >= threshold``, a heat map."""
    from pipeline.features.importance import correlation
    from pipeline.features.plots import plot_correlation

    matrix, pairs = correlation(X, names, threshold)
    plot = Path(directory) / "correlation.png"
    with atomic_path(plot) as tmp:
        plot_correlation(matrix, names, tmp)
    result = {
        "names": list(names), "matrix": [[round(float(v), 6) for v in row] for row in matrix],
        "pairs": [{"a": a, "b": b, "r": r} for a, b, r in pairs], "threshold": threshold,
    }
    return result, {"correlation": str(plot)}, None
