"""Validation of explanation requests: unknown methods and out-of-range parameters are refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.errors import InvalidInput, MethodNotApplicable
from pipeline.xai import METHODS, explain, params_digest, validate_method_params


def test_every_method_validates_with_its_defaults() -> None:
    for method, spec in METHODS.items():
        resolved = validate_method_params(method)
        assert set(resolved) == set(spec.params)


def test_defaults_are_documented_values() -> None:
    assert validate_method_params("shap")["background_size"] == 100
    assert validate_method_params("lime", {"n_segments": 8})["n_segments"] == 8


@pytest.mark.parametrize(
    ("method", "params", "match"),
    [
        ("integrated_gradients", {"n_steps": 0}, "n_steps"),
        ("lime", {"n_segments": 1}, "n_segments"),
        ("kernel_shap", {"n_segments": 20_481}, "n_segments"),
        ("shap", {"background_size": 0}, "background_size"),
        ("shap", {"n_samples": -3}, "n_samples"),
        ("lime", {"off": "noise"}, "off"),
        ("lime", {"n_samples": True}, "integer"),
        ("lime", {"n_samples": 10.5}, "integer"),
        ("gradcam", {"layer": 3}, "string"),
        ("shap", {"n_steps": 10}, "unknown parameter"),
        ("kernel_shap", {"n_segments": 32, "n_samples": 20}, "n_segments \\+ 2"),
    ],
)
def test_out_of_range_or_unknown_parameters_are_refused(method, params, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        validate_method_params(method, params)


def test_segments_are_bounded_by_the_signal_length() -> None:
    assert validate_method_params("lime", {"n_segments": 1024}, signal_length=1024)
    with pytest.raises(InvalidInput, match="n_segments"):
        validate_method_params("lime", {"n_segments": 1025}, signal_length=1024)


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown explanation method 'deeplift'"):
        validate_method_params("deeplift", {})


def test_a_method_must_fit_the_model_kind() -> None:
    with pytest.raises(MethodNotApplicable):
        validate_method_params("gradcam", model_key="svm")
    with pytest.raises(InvalidInput, match="unknown model"):
        validate_method_params("shap", model_key="xgboost")
    assert validate_method_params("kernel_shap", model_key="gbm")


def test_params_digest_is_stable_and_depends_on_the_parameters() -> None:
    a = validate_method_params("lime", {"n_segments": 8})
    assert params_digest("lime", a) == params_digest("lime", dict(reversed(a.items())))
    assert params_digest("lime", a) != params_digest("lime", {**a, "seed": 1})


def test_explain_refuses_bad_windows_backgrounds_and_classes(burst_model) -> None:
    good = np.zeros(1024, np.float32)
    with pytest.raises(InvalidInput, match="NaN"):
        explain(burst_model, "cnn1d", np.full(1024, np.nan), "gradcam")
    with pytest.raises(InvalidInput, match="takes windows of 1 channel"):
        explain(burst_model, "cnn1d", np.zeros((2, 1024)), "gradcam")
    with pytest.raises(InvalidInput, match=r"\[L\] or \[C, L\]"):
        explain(burst_model, "cnn1d", np.zeros((2, 2, 1024)), "gradcam")
    with pytest.raises(InvalidInput, match="background"):
        explain(burst_model, "cnn1d", good, "shap", background=np.zeros((4, 512)))
    with pytest.raises(InvalidInput, match="class_index"):
        explain(burst_model, "cnn1d", good, "gradcam", class_index=2)
    with pytest.raises(InvalidInput, match="n_segments"):
        explain(burst_model, "cnn1d", good[:16], "lime", {"n_segments": 32})


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, pipeline.xai; from pipeline.xai import validate_method_params, METHODS; "
        "heavy = [m for m in ('torch', 'shap', 'lime', 'matplotlib', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
