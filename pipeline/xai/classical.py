"""SHAP and LIME for the classical models (feature selection -> scaler -> classifier).

Both explain the **final estimator on the transformed features** (the 15 MRMR-selected,
standardised columns), then map each column back to its original feature name; features the
selection dropped get exactly 0, since the model never sees them. Standardisation is a
per-feature affine map, so a column's attribution is its original feature's.

SHAP uses ``TreeExplainer`` (exact, path-dependent, no background needed) when the final
estimator is a tree ensemble and ``KernelExplainer`` otherwise. Without a background the
reference is the all-zeros row: after a ``StandardScaler`` that is the training mean.
LIME needs data statistics: the transformed background, else (after a scaler) samples of
N(0, 1), the standardised training distribution's first two moments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.xai.result import Attribution

__all__ = ["class_column", "lime_features", "shap_features", "split_pipeline"]

_TREE_MODELS = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "DecisionTreeClassifier",
    }
)


def split_pipeline(model: Any, n_features: int) -> tuple[list[Any], Any, np.ndarray, bool]:
    """Return (transformers, final estimator, kept feature indices, ends with a scaler).

    Raises:
        InvalidInput: a transformer changes the number of columns in a way that cannot be
            mapped back to feature names (only selectors with ``support_`` or
            ``get_support`` may drop columns).
    """
    steps = [
        s for _, s in getattr(model, "steps", [("model", model)]) if s not in (None, "passthrough")
    ]
    transformers, final = steps[:-1], steps[-1]
    support = np.arange(n_features)
    for step in transformers:
        if hasattr(step, "support_"):
            support = support[np.asarray(step.support_, dtype=np.int64)]
        elif hasattr(step, "get_support"):
            support = support[step.get_support(indices=True)]
        elif getattr(step, "n_features_in_", support.size) != support.size:
            raise InvalidInput(f"cannot map {type(step).__name__}'s output back to feature names")
    scaled = bool(transformers) and type(transformers[-1]).__name__ == "StandardScaler"
    return transformers, final, support, scaled


def _transform(transformers: Sequence[Any], rows: np.ndarray) -> np.ndarray:
    for step in transformers:
        rows = step.transform(rows)
    return np.asarray(rows, dtype=np.float64)


def class_column(model: Any, class_index: int) -> int:
    """Column of ``predict_proba`` that holds class ``class_index``.

    Raises:
        InvalidInput: the model was not trained on that class.
    """
    classes = [int(c) for c in model.classes_]
    if class_index not in classes:
        raise InvalidInput(f"class {class_index} is not among the model's classes {classes}")
    return classes.index(class_index)


def _pick(values: Any, base: Any, column: int, n_columns: int) -> tuple[np.ndarray, float]:
    """One output's SHAP values and base value, whatever layout shap returned."""
    if isinstance(values, list):
        values = np.stack(values, axis=-1)
    values = np.asarray(values, dtype=np.float64)[0]  # one row explained
    base = np.ravel(np.asarray(base, dtype=np.float64))
    if values.ndim == 2:
        return values[:, column], float(base[column])
    # One output for a binary model: the margin of the second class; the first is its negative.
    sign = -1.0 if (n_columns == 2 and column == 0) else 1.0
    return sign * values, sign * float(base[0])


def _background(
    transformers: Sequence[Any], background: np.ndarray | None, size: int, seed: int
) -> np.ndarray | None:
    if background is None or len(background) == 0:
        return None
    rows = _transform(transformers, np.asarray(background, dtype=np.float64))
    if len(rows) > size:
        rows = rows[np.random.default_rng(seed).choice(len(rows), size, replace=False)]
    return rows


def shap_features(
    model: Any,
    features: np.ndarray,
    column: int,
    background: np.ndarray | None = None,
    n_samples: int = 200,
    background_size: int = 100,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """SHAP values of the ``column``-th output for one feature row ``[n_features]``.

    ``background`` (feature rows ``[n, n_features]``) is used by KernelExplainer only.
    ``shap_base_value`` + sum(values) equals the explained output exactly (probability for
    forests and kernels, raw margin for gradient boosting: see ``extra["shap_output"]``).
    """
    import shap

    check_stop(should_stop)
    transformers, final, support, scaled = split_pipeline(model, features.size)
    row = _transform(transformers, features[None, :])
    n_columns = len(final.classes_)
    if type(final).__name__ in _TREE_MODELS:
        explainer = shap.TreeExplainer(final)
        values, base = _pick(
            explainer.shap_values(row), explainer.expected_value, column, n_columns
        )
        is_margin = type(final).__name__.endswith("BoostingClassifier")
        extra = {
            "explainer": "TreeExplainer",
            "shap_output": "margin" if is_margin else "probability",
        }
    else:
        reference = _background(transformers, background, background_size, seed)
        if reference is None:
            if not scaled:
                raise InvalidInput("KernelExplainer needs background windows for this model")
            reference = np.zeros((1, row.shape[1]))

        def f(z: np.ndarray) -> np.ndarray:
            check_stop(should_stop)
            return final.predict_proba(z)[:, column]

        explainer = shap.KernelExplainer(f, reference)
        np.random.seed(seed)  # shap draws coalitions from numpy's global RNG
        raw = explainer.shap_values(row, nsamples=n_samples, l1_reg=False, silent=True)
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
        base = float(np.ravel(explainer.expected_value)[0])
        extra = {"explainer": "KernelExplainer", "shap_output": "probability"}
    out = np.zeros(features.size)
    out[support] = values
    on_progress(1.0, "shap")
    return Attribution(
        out, {**extra, "shap_base_value": base, "selected_features": int(support.size)}
    )


def lime_features(
    model: Any,
    features: np.ndarray,
    column: int,
    feature_names: Sequence[str],
    background: np.ndarray | None = None,
    n_samples: int = 1000,
    background_size: int = 100,
    kernel_width: float | None = None,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """``lime.lime_tabular`` on the transformed features for the ``column``-th class.

    LIME's weights are per discretised feature (quartile bins); each maps to its feature.
    """
    from lime.lime_tabular import LimeTabularExplainer

    check_stop(should_stop)
    transformers, final, support, scaled = split_pipeline(model, features.size)
    row = _transform(transformers, features[None, :])[0]
    training = _background(transformers, background, background_size, seed)
    if training is None:
        if not scaled:
            raise InvalidInput("LIME needs background windows for this model")
        training = np.random.default_rng(seed).standard_normal(
            (max(background_size, 200), row.size)
        )

    def predict(z: np.ndarray) -> np.ndarray:
        check_stop(should_stop)
        return final.predict_proba(z)

    explainer = LimeTabularExplainer(
        training,
        mode="classification",
        feature_names=[feature_names[i] for i in support],
        discretize_continuous=True,
        kernel_width=kernel_width,
        random_state=seed,
    )
    exp = explainer.explain_instance(
        row, predict, labels=(column,), num_features=row.size, num_samples=n_samples
    )
    out = np.zeros(features.size)
    for index, weight in exp.as_map()[column]:
        out[support[index]] = weight
    on_progress(1.0, "lime")
    extra = {
        "output": "probability",
        "lime_intercept": float(exp.intercept[column]),
        "lime_score": float(np.ravel(exp.score)[0]) if np.size(exp.score) else 0.0,
        "lime_local_pred": float(np.ravel(exp.local_pred)[0]),
        "selected_features": int(support.size),
    }
    return Attribution(out, extra)
