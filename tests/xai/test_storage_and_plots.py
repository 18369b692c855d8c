"""Explanation files (compressed npz, no pickle) and PNG figures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from pipeline.errors import ExplanationFileError, InvalidInput
from pipeline.xai import (
    explain,
    load_explanation,
    mean_abs_attribution_by_class,
    plot_class_mean_attribution,
    plot_explanation,
    save_explanation,
)
from tests.xai.conftest import burst_windows


@pytest.fixture(scope="module")
def signal_explanation(burst_model):  # type: ignore[no-untyped-def]
    window = burst_windows(2, seed=4)[0][1]
    return window, explain(burst_model, "cnn1d", window, "integrated_gradients", {"n_steps": 16})


def test_explanation_round_trips_through_its_file(tmp_path, signal_explanation) -> None:
    _, e = signal_explanation
    path = save_explanation(tmp_path / "e.npz", e)
    back = load_explanation(path)
    assert back.to_dict() == e.to_dict()
    assert np.allclose(back.attributions, e.attributions, rtol=1e-6, atol=1e-12)
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert data["attributions"].dtype == np.float32


def test_feature_explanation_round_trips_with_its_names(
    tmp_path, feature_data, classical_models
) -> None:
    e = explain(classical_models["rf"], "rf", feature_data[0][1], "shap")
    back = load_explanation(save_explanation(tmp_path / "f.npz", e))
    assert back.feature_names == e.feature_names and back.kind == "features"


def test_a_corrupt_or_missing_file_is_refused(tmp_path) -> None:
    with pytest.raises(ExplanationFileError):
        load_explanation(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ExplanationFileError):
        load_explanation(tmp_path / "bad.npz")
    np.savez(tmp_path / "foreign.npz", attributions=np.zeros(3), record=np.array("{}"))
    with pytest.raises(ExplanationFileError, match="not a"):
        load_explanation(tmp_path / "foreign.npz")


def test_signal_plot_is_a_readable_png(tmp_path, signal_explanation) -> None:
    window, e = signal_explanation
    image = imread(plot_explanation(tmp_path / "plots" / "signal.png", window, e))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_feature_plot_is_a_readable_png(tmp_path, feature_data, classical_models) -> None:
    e = explain(classical_models["svm"], "svm", feature_data[0][1], "lime", {"n_samples": 100})
    assert imread(plot_explanation(tmp_path / "features.png", feature_data[0][1], e)).ndim == 3


def test_signal_plot_refuses_a_window_of_another_length(tmp_path, signal_explanation) -> None:
    _, e = signal_explanation
    with pytest.raises(InvalidInput):
        plot_explanation(tmp_path / "x.png", np.zeros(10), e)


def test_class_mean_attribution_plots_for_signals_and_features(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pairs = [(c, rng.standard_normal(20_480)) for c in (0, 0, 5, 10)]
    means = mean_abs_attribution_by_class(pairs)
    assert set(means) == {0, 5, 10}
    assert np.allclose(means[0], (np.abs(pairs[0][1]) + np.abs(pairs[1][1])) / 2)
    assert imread(plot_class_mean_attribution(tmp_path / "signal.png", means)).ndim == 3
    features = {c: rng.random(36) for c in range(11)}
    assert imread(plot_class_mean_attribution(tmp_path / "features.png", features)).ndim == 3


def test_class_mean_attribution_refuses_mixed_lengths(tmp_path) -> None:
    with pytest.raises(InvalidInput):
        mean_abs_attribution_by_class([(0, np.zeros(4)), (0, np.zeros(5))])
    with pytest.raises(InvalidInput):
        plot_class_mean_attribution(tmp_path / "x.png", {0: np.zeros(4), 1: np.zeros(5)})
    with pytest.raises(InvalidInput):
        plot_class_mean_attribution(tmp_path / "x.png", {})


def test_a_signal_trace_keeps_every_bins_extremes_in_time_order() -> None:
    from pipeline.xai.plots import _extremes, _strongest

    rng = np.random.default_rng(3)
    values = rng.standard_normal(20_480)
    values[12_345], values[777] = 9.0, -7.0  # one spike up, one down, each alone in its bin
    positions, trace = _extremes(values, 2048)
    assert trace.size == positions.size == 2 * 2048
    assert trace.max() == 9.0 and trace.min() == -7.0
    # Every bin's minimum and maximum are drawn, so the trace covers what the full one does.
    edges = np.linspace(0, values.size, 2049).round().astype(int)
    lows, highs = np.minimum.reduceat(values, edges[:-1]), np.maximum.reduceat(values, edges[:-1])
    assert np.array_equal(np.sort(trace.reshape(-1, 2), axis=1), np.column_stack([lows, highs]))
    assert np.all(np.diff(positions) >= 0)
    # The colour band keeps each bin's strongest value with its sign.
    band = _strongest(values, 2048)
    assert band.size == 2048 and band.max() == 9.0 and band.min() == -7.0
    # A short window is drawn as it is.
    assert np.array_equal(_extremes(values[:100], 2048)[1], values[:100])
