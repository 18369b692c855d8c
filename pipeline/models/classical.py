"""Classical classifiers on the 36 features: MRMR top-k, standardisation, then the model.

Persistence uses skops (never pickle): a file is loaded only when every type it holds is
either trusted by skops by default or on this module's explicit allowlist, and only when
its SHA-256 matches the one recorded at save time.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from pipeline.artifacts import atomic_path, file_sha256
from pipeline.errors import CheckpointError

__all__ = [
    "TRUSTED_TYPES",
    "MRMRSelector",
    "gradient_boosting",
    "load_classical",
    "random_forest",
    "save_classical",
    "svm",
]

# Types a saved classical model may hold beyond what skops trusts by default. Adding one
# here is a security decision: skops rebuilds these objects from the file.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "pipeline.models.classical.MRMRSelector",
        "sklearn.tree._tree.Tree",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)


class MRMRSelector(TransformerMixin, BaseEstimator):
    """Keep the ``k`` features chosen by MRMR (relevance minus mean redundancy) on fit."""

    def __init__(self, k: int = 15) -> None:
        self.k = k

    def fit(self, X: np.ndarray, y: np.ndarray) -> MRMRSelector:
        """Choose the features on ``X`` [n, d] and labels ``y``."""
        from pipeline.features.selection import mrmr

        k = min(int(self.k), X.shape[1])
        self.support_ = [int(i) for i in mrmr(np.asarray(X), np.asarray(y), k)]
        self.n_features_in_ = int(X.shape[1])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return the chosen columns of ``X``."""
        return np.asarray(X)[:, self.support_]


def _pipeline(classifier: Any, k_features: int) -> Pipeline:
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [("mrmr", MRMRSelector(k_features)), ("scale", StandardScaler()), ("model", classifier)]
    )


def random_forest(
    n_estimators: int = 300,
    max_depth: int | None = None,
    min_samples_leaf: int = 1,
    k_features: int = 15,
    random_state: int = 0,
    n_jobs: int = 1,
) -> Pipeline:
    """Return MRMR -> StandardScaler -> RandomForestClassifier."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    return _pipeline(forest, k_features)


def svm(
    C: float = 10.0,
    kernel: str = "rbf",
    gamma: str | float = "scale",
    k_features: int = 15,
    calibration_folds: int = 5,
) -> Pipeline:
    """Return MRMR -> StandardScaler -> SVC with Platt-scaled probabilities.

    ``CalibratedClassifierCV(SVC(), ensemble=False)`` is what ``SVC(probability=True)`` did
    internally (sigmoid calibration on cross-validated decision values, then one SVC fitted
    on all data); scikit-learn 1.9 deprecates the flag in its favour.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    if kernel not in ("rbf", "linear", "poly", "sigmoid"):
        raise ValueError(f"kernel must be rbf, linear, poly or sigmoid, got {kernel!r}")
    if isinstance(gamma, str) and gamma not in ("scale", "auto"):
        raise ValueError(f"gamma must be 'scale', 'auto' or a positive number, got {gamma!r}")
    if calibration_folds < 2:
        raise ValueError(f"calibration_folds must be at least 2, got {calibration_folds}")
    classifier = CalibratedClassifierCV(
        SVC(C=C, kernel=kernel, gamma=gamma), method="sigmoid", cv=calibration_folds, ensemble=False
    )
    return _pipeline(classifier, k_features)


def gradient_boosting(
    max_iter: int = 200,
    learning_rate: float = 0.1,
    max_depth: int | None = None,
    max_leaf_nodes: int = 31,
    k_features: int = 15,
    random_state: int = 0,
) -> Pipeline:
    """Return MRMR -> StandardScaler -> HistGradientBoostingClassifier (no early stopping)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    boosting = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_depth=max_depth,
        max_leaf_nodes=max_leaf_nodes,
        early_stopping=False,
        random_state=random_state,
    )
    return _pipeline(boosting, k_features)


def save_classical(model: Pipeline, path: str | os.PathLike[str]) -> str:
    """Write ``model`` to ``path`` with skops, atomically; return the file's SHA-256."""
    import skops.io as sio

    target = Path(path)
    with atomic_path(target) as tmp:
        sio.dump(model, tmp)
    return file_sha256(target)


def load_classical(path: str | os.PathLike[str], sha256: str | None = None) -> Pipeline:
    """Load a model saved by ``save_classical``.

    Raises:
        CheckpointError: the file is missing or corrupt, its SHA-256 differs from ``sha256``,
            or it holds a type outside skops' defaults and ``TRUSTED_TYPES``.
    """
    import skops.io as sio

    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"classical model file not found: {source}")
    if sha256 is not None and file_sha256(source) != sha256:
        raise CheckpointError(f"classical model file {source} does not match its recorded SHA-256")
    try:
        untrusted = sio.get_untrusted_types(file=source)
        refused = sorted(set(untrusted) - TRUSTED_TYPES)
        if refused:
            raise CheckpointError(f"classical model file {source} holds untrusted types: {refused}")
        model = sio.load(source, trusted=list(untrusted))
    except CheckpointError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        ImportError,
        zipfile.BadZipFile,
    ) as exc:
        # what skops raises for a damaged or foreign file: all of them mean "corrupt"
        raise CheckpointError(f"cannot read classical model file {source}: {exc}") from exc
    if not isinstance(model, Pipeline):
        raise CheckpointError(f"classical model file {source} does not hold a Pipeline")
    return model
