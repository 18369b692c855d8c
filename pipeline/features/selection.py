"""Feature selection: MRMR, variance threshold, SelectKBest (mutual information), RFE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import (
    RFE,
    SelectKBest,
    VarianceThreshold,
    mutual_info_classif,
    mutual_info_regression,
)

from pipeline.errors import InvalidInput

__all__ = [
    "METHODS",
    "Selection",
    "mrmr",
    "rfe",
    "select_features",
    "select_k_best",
    "variance_threshold",
]

METHODS: tuple[str, ...] = ("mrmr", "variance_threshold", "select_k_best", "rfe")


@dataclass(frozen=True)
class Selection:
    """Chosen columns, best first, with the score each was chosen on."""

    indices: list[int]
    names: list[str]
    scores: list[float]
    method: str


def _check_k(k: int, n_features: int) -> None:
    """Raise ``InvalidInput`` unless ``1 ≤ k ≤ n_features``."""
    if not 1 <= k <= n_features:
        raise InvalidInput(f"k must be between 1 and {n_features}, got {k}")


def _mrmr_scores(
    X: np.ndarray, y: np.ndarray, k: int, random_state: int
) -> tuple[list[int], list[float]]:
    """Greedy MRMR: indices in pick order and the score (relevance - redundancy) of each."""
    relevance = mutual_info_classif(X, y, random_state=random_state)
    chosen = [int(np.argmax(relevance))]
    scores = [float(relevance[chosen[0]])]
    # redundancy_sum[j] = Σ over chosen s of I(x_j; x_s); one MI sweep per chosen feature.
    redundancy_sum = np.zeros(X.shape[1])
    while len(chosen) < k:
        redundancy_sum += mutual_info_regression(X, X[:, chosen[-1]], random_state=random_state)
        score = relevance - redundancy_sum / len(chosen)
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        scores.append(float(score[best]))
    return chosen, scores


def mrmr(X: np.ndarray, y: np.ndarray, k: int, random_state: int = 0) -> list[int]:
    """Pick ``k`` features by minimum redundancy, maximum relevance (difference form).

    Greedy: first the feature with the largest mutual information with the label
    (``mutual_info_classif``); then, each step, the one maximising
    ``I(x_j; y) - mean_s I(x_j; x_s)`` over the features ``s`` already chosen, the
    redundancy estimated with ``mutual_info_regression`` (k-NN estimator). A copy of a
    chosen feature carries maximal redundancy, so it is not picked twice.

    Returns:
        Column indices in pick order.

    Raises:
        InvalidInput: bad shapes or ``k`` outside ``[1, n_features]``.
    """
    X, y = _check_xy(X, y)
    _check_k(k, X.shape[1])
    return _mrmr_scores(X, y, k, random_state)[0]


def variance_threshold(X: np.ndarray, threshold: float = 0.0) -> list[int]:
    """Columns whose variance exceeds ``threshold``, in column order (``VarianceThreshold``).

    Raises:
        InvalidInput: no column passes, or a negative threshold.
    """
    if threshold < 0:
        raise InvalidInput(f"variance threshold must be ≥ 0, got {threshold}")
    X = _check_x(X)
    selector = VarianceThreshold(threshold=threshold)
    try:
        selector.fit(X)
    except ValueError as exc:
        raise InvalidInput(f"no feature has variance above {threshold}") from exc
    return [int(i) for i in np.flatnonzero(selector.get_support())]


def _k_best(
    X: np.ndarray, y: np.ndarray, k: int, random_state: int
) -> tuple[list[int], list[float]]:
    """SelectKBest on mutual information: the ``k`` best indices, best first, and their MI."""
    selector = SelectKBest(partial(mutual_info_classif, random_state=random_state), k=k).fit(X, y)
    order = np.argsort(-selector.scores_, kind="stable")[:k]
    return [int(i) for i in order], [float(selector.scores_[i]) for i in order]


def select_k_best(X: np.ndarray, y: np.ndarray, k: int, random_state: int = 0) -> list[int]:
    """The ``k`` columns with the largest mutual information with the label, best first."""
    X, y = _check_xy(X, y)
    _check_k(k, X.shape[1])
    return _k_best(X, y, k, random_state)[0]


def _rfe(X: np.ndarray, y: np.ndarray, k: int, random_state: int) -> tuple[list[int], list[float]]:
    """RFE with a random forest down to ``k`` columns: indices by final importance, and it."""
    forest = RandomForestClassifier(n_estimators=100, random_state=random_state, n_jobs=1)
    # Dropping ~10 % of the columns per round keeps 36 → 15 to a handful of refits.
    step = max(1, X.shape[1] // 10)
    fitted = RFE(forest, n_features_to_select=k, step=step).fit(X, y)
    kept = np.flatnonzero(fitted.support_)
    importances = fitted.estimator_.feature_importances_
    order = np.argsort(-importances, kind="stable")
    return [int(kept[i]) for i in order], [float(importances[i]) for i in order]


def rfe(X: np.ndarray, y: np.ndarray, k: int, random_state: int = 0) -> list[int]:
    """``k`` columns kept by RFE with a random forest, most important (final forest) first."""
    X, y = _check_xy(X, y)
    _check_k(k, X.shape[1])
    return _rfe(X, y, k, random_state)[0]


def _check_x(X: np.ndarray) -> np.ndarray:
    """Return ``X`` as a finite float64 ``[n, k]`` array or raise ``InvalidInput``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise InvalidInput(f"X must be [n_samples ≥ 2, n_features ≥ 1], got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InvalidInput("X holds NaN or inf")
    return X


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``X`` and integer labels ``y`` of matching length."""
    X = _check_x(X)
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise InvalidInput(f"y must have shape ({X.shape[0]},), got {y.shape}")
    return X, y


def select_features(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    method: str,
    k: int | None = None,
    **params: Any,
) -> Selection:
    """Select features with one of ``METHODS``; the single entry point for actors.

    Args:
        X: ``[n, n_features]`` feature values.
        y: ``[n]`` class labels.
        names: one name per column.
        method: ``"mrmr"``, ``"variance_threshold"``, ``"select_k_best"`` or ``"rfe"``.
        k: columns to keep; required except for ``variance_threshold``, where it keeps
            the ``k`` highest-variance columns among those passing (all when None).
        params: ``random_state`` (mrmr, select_k_best, rfe); ``threshold`` (variance).

    Returns:
        ``Selection``: indices and names best first (variance: highest variance first),
        with scores: MRMR score at pick time, mutual information, final-forest importance,
        or variance.

    Raises:
        InvalidInput: unknown method or parameter, ``k`` outside ``[1, n_features]``,
            names not matching the columns, bad shapes.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown selection method {method!r}; valid: {', '.join(METHODS)}")
    allowed = {"threshold"} if method == "variance_threshold" else {"random_state"}
    unknown = set(params) - allowed
    if unknown:
        raise InvalidInput(
            f"{method} takes no parameter(s) {sorted(unknown)}; it takes {sorted(allowed)}"
        )
    X = _check_x(X)
    names = list(names)
    if len(names) != X.shape[1]:
        raise InvalidInput(f"{len(names)} names for {X.shape[1]} columns")
    if k is None and method != "variance_threshold":
        raise InvalidInput(f"{method} needs k, the number of features to keep")
    if k is not None:
        _check_k(k, X.shape[1])
    random_state = int(params.get("random_state", 0))

    if method == "variance_threshold":
        kept = variance_threshold(X, float(params.get("threshold", 0.0)))
        variances = X.var(axis=0)
        indices = sorted(kept, key=lambda i: -variances[i])[: k or len(kept)]
        scores = [float(variances[i]) for i in indices]
    else:
        X, y = _check_xy(X, y)
        ranker = {"mrmr": _mrmr_scores, "select_k_best": _k_best, "rfe": _rfe}[method]
        indices, scores = ranker(X, y, k, random_state)
    return Selection(
        indices=list(indices), names=[names[i] for i in indices], scores=scores, method=method
    )
