"""Model registry, architectures and classical pipelines (tiny inputs, one thread)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.errors import CheckpointError, InvalidInput
from pipeline.models import (
    CLASSICAL_KEYS,
    DEEP_KEYS,
    MODEL_KEYS,
    SEARCHED_KEYS,
    build_model,
    count_parameters,
    is_deep,
    validate_model_args,
)
from pipeline.models.classical import load_classical, save_classical

torch.set_num_threads(1)


@pytest.mark.parametrize("key", DEEP_KEYS)
@pytest.mark.parametrize("length", [512, 1024, 20_480])
def test_deep_model_maps_any_window_length_to_11_logits(key: str, length: int) -> None:
    torch.manual_seed(0)
    model = build_model(key, {}).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, length))
    assert out.shape == (2, 11)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


def test_resnet18_avgmax_pool_keeps_a_short_event_that_the_mean_dilutes() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", {"pool": "avgmax", "base_width": 8}).eval()
    spike = torch.zeros(1, 8, 80)
    spike[0, :, 40] = 80.0  # one event at one of 80 positions of the last feature map
    avg, peak = model.pool(spike).flatten(1).split(8, dim=1)
    assert torch.allclose(avg, torch.ones(1, 8)) and torch.allclose(peak, torch.full((1, 8), 80.0))
    assert model.head[-1].in_features == 2 * 8 * 8  # mean and maximum of the last stage's 64 channels
    with torch.no_grad():
        assert model(torch.randn(2, 1, 20_480)).shape == (2, 11)


def test_model_keys_are_deep_then_searched_then_classical() -> None:
    assert MODEL_KEYS == DEEP_KEYS + SEARCHED_KEYS + CLASSICAL_KEYS
    assert SEARCHED_KEYS == ("nas_net",) and CLASSICAL_KEYS == ("rf", "svm", "gbm")
    assert all(is_deep(key) for key in DEEP_KEYS + SEARCHED_KEYS)


@pytest.mark.parametrize("key", CLASSICAL_KEYS)
def test_classical_model_is_mrmr_then_scaler_then_classifier(key: str) -> None:
    model = build_model(key, {})
    assert [name for name, _ in model.steps] == ["mrmr", "scale", "model"]
    assert model.named_steps["mrmr"].k == 15
    assert count_parameters(model) == 0


def test_validate_model_args_fills_defaults_and_converts_int_to_float() -> None:
    args = validate_model_args("cnn1d", {"width": 8, "dropout": 0})
    assert args == {"num_classes": 11, "in_channels": 1, "width": 8, "depth": 4, "kernel_size": 7, "dropout": 0.0}
    assert isinstance(args["dropout"], float)


@pytest.mark.parametrize(
    ("key", "args", "named"),
    [
        ("lenet", {}, "unknown model 'lenet'"),
        ("cnn1d", {"widht": 8}, "widht"),
        ("resnet18", {"base_width": "64"}, "base_width"),
        ("resnet18", {"base_width": 6.5}, "base_width"),
        ("resnet18", {"pool": "median"}, "pool"),
        ("cnn_lstm", {"bidirectional": 1}, "bidirectional"),
        ("cnn_lstm", {"hidden_size": True}, "hidden_size"),
        ("attention_cnn", {"dropout": 1.5}, "dropout"),
        ("cnn1d", {"width": 0}, "width"),
        ("signal_transformer", {"d_model": 30, "nhead": 4}, "d_model"),
        ("signal_transformer", {"patch_size": 1024}, "patch_size"),
        ("rf", {"max_depth": "deep"}, "max_depth"),
        ("svm", {"gamma": "wide"}, "gamma"),
    ],
)
def test_validate_model_args_rejects_bad_arguments_naming_them(
    key: str, args: dict, named: str
) -> None:
    with pytest.raises(InvalidInput, match=named):
        validate_model_args(key, args)


def test_optional_int_argument_accepts_none() -> None:
    assert validate_model_args("rf", {"max_depth": None})["max_depth"] is None
    assert validate_model_args("rf", {"max_depth": 4})["max_depth"] == 4


def test_importing_registry_and_training_types_loads_neither_torch_nor_sklearn() -> None:
    code = (
        "import sys, pipeline.models, pipeline.training;"
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _separable_features(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    X = rng.standard_normal((len(y), 36))
    for column in (3, 17, 30):  # three informative columns among 36
        X[:, column] += 3.0 * y
    return X, y


SMALL = {"rf": {"n_estimators": 20}, "svm": {}, "gbm": {"max_iter": 20}}


@pytest.mark.parametrize("key", CLASSICAL_KEYS)
def test_classical_model_beats_chance_and_round_trips_through_skops(key: str, tmp_path) -> None:
    X, y = _separable_features(30, seed=0)
    X_test, y_test = _separable_features(10, seed=1)
    model = build_model(key, SMALL[key]).fit(X, y)
    assert (model.predict(X_test) == y_test).mean() > 0.8
    assert {3, 17, 30} <= set(model.named_steps["mrmr"].support_)

    digest = save_classical(model, tmp_path / "model.skops")
    loaded = load_classical(tmp_path / "model.skops", sha256=digest)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))


def test_load_classical_refuses_a_changed_file(tmp_path) -> None:
    X, y = _separable_features(10, seed=0)
    path = tmp_path / "model.skops"
    digest = save_classical(build_model("rf", SMALL["rf"]).fit(X, y), path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_classical(path, sha256=digest)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_classical(path)


def test_load_classical_refuses_untrusted_types(tmp_path) -> None:
    import os

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    save_classical(Pipeline([("f", FunctionTransformer(os.system))]), path)
    with pytest.raises(CheckpointError, match="untrusted"):
        load_classical(path)


def test_load_classical_refuses_a_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_classical(tmp_path / "absent.skops")
