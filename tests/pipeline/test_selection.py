"""Feature selection and importance on synthetic data whose informative columns are known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidInput
from pipeline.features.importance import compute_importance, correlation
from pipeline.features.selection import (
    METHODS,
    mrmr,
    rfe,
    select_features,
    select_k_best,
    variance_threshold,
)

NAMES = ["signal_a", "copy_of_a", "signal_b", "noise_1", "noise_2", "constant"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Columns 0 and 2 carry the label independently; 1 duplicates 0; 3-4 noise; 5 constant."""
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 4, n)
    a = (y % 2) + 0.3 * rng.standard_normal(n)
    b = (y // 2) + 0.3 * rng.standard_normal(n)
    X = np.column_stack([a, a, b, rng.standard_normal(n), rng.standard_normal(n), np.ones(n)])
    return X, y


def test_mrmr_picks_both_signals_and_never_the_copy_twice(data) -> None:
    X, y = data
    picked = mrmr(X, y, k=2, random_state=0)
    assert 2 in picked
    assert len({0, 1} & set(picked)) == 1


def test_mrmr_is_reproducible_with_a_seed(data) -> None:
    X, y = data
    assert mrmr(X, y, 3, random_state=1) == mrmr(X, y, 3, random_state=1)


def test_select_k_best_and_rfe_rank_the_signals_first(data) -> None:
    X, y = data
    assert set(select_k_best(X, y, 3)) == {0, 1, 2}
    assert 2 in rfe(X, y, 2) and set(rfe(X, y, 2)) <= {0, 1, 2}


def test_variance_threshold_drops_the_constant_column(data) -> None:
    X, _ = data
    assert variance_threshold(X, 0.0) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("method", METHODS)
def test_select_features_returns_names_and_scores(data, method) -> None:
    X, y = data
    selection = select_features(X, y, NAMES, method, k=2)
    assert selection.method == method
    assert len(selection.indices) == len(selection.names) == len(selection.scores) == 2
    assert selection.names == [NAMES[i] for i in selection.indices]
    assert "constant" not in selection.names


@pytest.mark.parametrize("k", [0, -1, 7])
def test_select_features_rejects_k_out_of_range(data, k) -> None:
    X, y = data
    with pytest.raises(InvalidInput, match="between 1 and 6"):
        select_features(X, y, NAMES, "mrmr", k=k)


def test_select_features_rejects_an_unknown_method_naming_the_valid_ones(data) -> None:
    X, y = data
    with pytest.raises(InvalidInput, match="select_k_best"):
        select_features(X, y, NAMES, "lasso", k=2)


def test_select_features_rejects_a_missing_k_or_a_foreign_parameter(data) -> None:
    X, y = data
    with pytest.raises(InvalidInput):
        select_features(X, y, NAMES, "rfe")
    with pytest.raises(InvalidInput):
        select_features(X, y, NAMES, "mrmr", k=2, threshold=0.1)


def test_compute_importance_ranks_an_informative_feature_first(data) -> None:
    X, y = data
    result = compute_importance(X, y, NAMES, random_state=0)
    assert list(result) == ["mutual_info", "random_forest", "permutation"]
    for ranked in result.values():
        scores = [score for _, score in ranked]
        assert scores == sorted(scores, reverse=True)
        assert ranked[0][0] in {"signal_a", "copy_of_a", "signal_b"}


def test_compute_importance_rejects_an_unknown_method(data) -> None:
    X, y = data
    with pytest.raises(InvalidInput, match="permutation"):
        compute_importance(X, y, NAMES, methods=("shap",))


def test_correlation_reports_the_duplicate_and_stays_finite(data) -> None:
    X, _ = data
    matrix, pairs = correlation(X, NAMES, threshold=0.95)
    assert np.isfinite(matrix).all()
    assert pairs[0][:2] == ("signal_a", "copy_of_a")
    assert pairs[0][2] == pytest.approx(1.0)
    assert matrix[5, 5] == 1.0 and matrix[0, 5] == 0.0
