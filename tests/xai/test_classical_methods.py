"""SHAP and LIME for the classical pipelines, over the 36 features."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidInput, MethodNotApplicable
from pipeline.features import FEATURE_NAMES
from pipeline.xai import explain


def _row(feature_data, i: int = 1):  # type: ignore[no-untyped-def]
    windows, _, features = feature_data
    return windows[i], features[i : i + 1]


def test_tree_shap_base_plus_values_equals_the_forest_probability(
    feature_data, classical_models
) -> None:
    # Given a random forest pipeline and a window
    window, features = _row(feature_data)
    model = classical_models["rf"]
    # When SHAP explains it
    e = explain(model, "rf", window, "shap")
    # Then TreeExplainer is exact: base value + sum(SHAP) = predict_proba of the target class
    assert e.extra["explainer"] == "TreeExplainer" and e.kind == "features"
    proba = model.predict_proba(features)[0][e.target_class]
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(proba, abs=1e-9)


def test_tree_shap_on_gradient_boosting_is_additive_on_the_margin(
    feature_data, classical_models
) -> None:
    window, features = _row(feature_data, 2)
    model = classical_models["gbm"]
    e = explain(model, "gbm", window, "shap", class_index=0)
    margin = model[-1].decision_function(model[:-1].transform(features))[0][0]
    assert e.extra["shap_output"] == "margin"
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(margin, abs=1e-6)


def test_kernel_shap_on_the_svm_is_additive(feature_data, classical_models) -> None:
    window, features = _row(feature_data)
    model = classical_models["svm"]
    windows = feature_data[0]
    e = explain(
        model,
        "svm",
        window,
        "shap",
        {"n_samples": 300, "background_size": 20},
        background=windows[:40],
    )
    assert e.extra["explainer"] == "KernelExplainer"
    proba = model.predict_proba(features)[0][e.target_class]
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(proba, abs=1e-6)


@pytest.mark.parametrize("key", ["rf", "svm"])
@pytest.mark.parametrize("method", ["shap", "lime"])
def test_attributions_cover_the_36_features_and_only_selected_ones_are_nonzero(
    feature_data, classical_models, key, method
) -> None:
    window, _ = _row(feature_data)
    model = classical_models[key]
    e = explain(model, key, window, method, {"n_samples": 200})
    assert e.attributions.shape == (36,) and e.feature_names == FEATURE_NAMES
    selected = set(model.named_steps["mrmr"].support_)
    assert all(e.attributions[i] == 0 for i in range(36) if i not in selected)
    assert np.abs(e.attributions).sum() > 0
    top = e.summary["top_features"]
    assert len(top) == 5 and top[0]["name"] == FEATURE_NAMES[top[0]["index"]]
    assert abs(top[0]["score"]) == np.abs(e.attributions).max()


def test_kernel_shap_over_signal_segments_explains_a_classical_model(
    feature_data, classical_models
) -> None:
    window, _ = _row(feature_data)
    model = classical_models["rf"]
    e = explain(model, "rf", window, "kernel_shap", {"n_segments": 8, "n_samples": 100})
    assert e.kind == "signal" and e.attributions.shape == window.shape
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(
        e.confidence, abs=1e-6
    )


def test_lime_tabular_uses_the_background_when_given(feature_data, classical_models) -> None:
    windows = feature_data[0]
    e = explain(
        classical_models["rf"],
        "rf",
        windows[1],
        "lime",
        {"n_samples": 200},
        background=windows[:30],
    )
    assert 0.0 <= e.extra["lime_local_pred"] <= 1.5 and e.extra["selected_features"] == 8


def test_gradient_methods_refuse_classical_models(feature_data, classical_models) -> None:
    for method in ("integrated_gradients", "gradcam"):
        with pytest.raises(MethodNotApplicable):
            explain(classical_models["rf"], "rf", feature_data[0][0], method)


def test_a_class_the_model_never_saw_is_refused(feature_data, classical_models) -> None:
    with pytest.raises(InvalidInput, match="class"):
        explain(classical_models["rf"], "rf", feature_data[0][0], "shap", class_index=7)


def test_a_classical_explanation_takes_features_at_each_windows_shaft_speed(feature_data, classical_models) -> None:
    from pipeline.features import extract_features

    # Given the explained window recorded at 29.5 Hz and background windows at their own speeds
    window, _ = _row(feature_data)
    background = feature_data[0][:40]
    background_speeds = np.linspace(28.0, 31.0, 40)
    calls = []

    def features(windows, shaft_hz):  # type: ignore[no-untyped-def]
        calls.append((len(windows), None if shaft_hz is None else np.asarray(shaft_hz)))
        return extract_features(windows, shaft_hz=shaft_hz).values

    explain(classical_models["svm"], "svm", window, "shap", {"n_samples": 100, "background_size": 10},
            background=background, feature_fn=features, shaft_hz=29.5, background_shaft_hz=background_speeds)
    # Then the window's features use its speed, and each drawn background window keeps its own
    (n_window, window_speeds), (n_background, drawn) = calls[:2]
    assert n_window == 1 and window_speeds.tolist() == [29.5]
    assert n_background == 10 and set(drawn.tolist()) <= set(background_speeds.tolist())
    assert len(set(drawn.tolist())) == 10
