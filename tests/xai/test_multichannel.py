"""Explanations of multi-channel models: two sensors, the fault visible on one of them.

The burst task of conftest on two channels: channel 0 ("DE") carries only noise, channel 1
("FE") carries the burst that decides the class. Every signal method returns ``[C, L]``
attributions whose top segment is the burst; the gradient methods put the weight on channel 1;
classical explanations name each channel's features.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from pipeline.errors import InvalidInput
from pipeline.features.extract import extract_window_features
from pipeline.xai import (
    activation_maps,
    explain,
    explain_record,
    mean_abs_attribution_by_class,
    plot_activation_maps,
    plot_explanation,
)
from tests.xai.conftest import BURST, FAST, LENGTH, burst_windows, train_burst_cnn

CHANNELS = ("DE", "FE")


def two_channel_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[n, 2, 1024]``: noise on channel 0, the burst task on channel 1."""
    burst, labels = burst_windows(n, seed)
    noise = 0.05 * np.random.default_rng(seed + 100).standard_normal(burst.shape).astype(np.float32)
    return np.stack([noise, burst], axis=1), labels


@pytest.fixture(scope="module")
def two_channel_data() -> tuple[np.ndarray, np.ndarray]:
    return two_channel_windows(256, seed=0)


@pytest.fixture(scope="module")
def two_channel_model(two_channel_data):  # type: ignore[no-untyped-def]
    """A 2-class, 2-channel cnn1d trained to find the burst on channel 1; test accuracy 1.0."""
    model = train_burst_cnn(*two_channel_data, in_channels=2)
    test_x, test_y = two_channel_windows(100, seed=1)
    with torch.no_grad():
        assert (model(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean() == 1.0
    return model


def _bursts() -> np.ndarray:
    x, y = two_channel_windows(12, seed=3)
    return x[y == 1][:2]


@pytest.mark.parametrize("method", list(FAST))
def test_each_method_attributes_per_channel_and_finds_the_burst_on_its_channel(
    two_channel_model, two_channel_data, method
) -> None:
    start, end = BURST
    for window in _bursts():
        e = explain(two_channel_model, "cnn1d", window, method, FAST[method], background=two_channel_data[0])
        # One value per sample of each channel
        assert e.predicted_class == 1 and e.kind == "signal" and e.attributions.shape == (2, LENGTH)
        record = e.to_dict()
        assert (record["channels"], record["length"]) == (2, LENGTH)
        assert len(e.summary["channel_totals"]) == 2 and len(e.summary["top_segments"][0]["by_channel"]) == 2
        # The top segment touches the burst (give or take one cell of the last conv layer)
        top = e.summary["top_segments"][0]
        assert top["end"] > start - 64 and top["start"] < end + 64, method
        if method in ("gradcam", "lime", "kernel_shap"):
            # A conv layer's map, and a segment switched off on every channel at once, say
            # when, not which sensor: the channels share the values.
            np.testing.assert_array_equal(e.attributions[0], e.attributions[1])
            continue
        # Gradients tell the sensors apart: the burst's channel holds more attribution in the
        # burst than the quiet channel anywhere
        burst_on_fe = np.abs(e.attributions[1, start:end]).mean()
        assert burst_on_fe > 2.0 * np.abs(e.attributions[0]).mean(), method


def test_additivity_holds_over_both_channels(two_channel_model) -> None:
    window = _bursts()[0]
    ig = explain(two_channel_model, "cnn1d", window, "integrated_gradients", {"n_steps": 256})
    x = torch.from_numpy(np.stack([window, np.zeros_like(window)]))
    with torch.no_grad():
        f = two_channel_model(x)[:, ig.target_class].double().numpy()
    assert abs(ig.attributions.sum() - (f[0] - f[1])) <= 0.01 * abs(f[0] - f[1])
    kernel = explain(two_channel_model, "cnn1d", window, "kernel_shap", FAST["kernel_shap"])
    assert kernel.extra["shap_base_value"] + kernel.attributions.sum() == pytest.approx(kernel.confidence, abs=1e-6)


def test_a_two_channel_record_is_explained_window_after_window(two_channel_model, tmp_path) -> None:
    windows = _bursts()
    e = explain_record(two_channel_model, "cnn1d", windows, "integrated_gradients", {"n_steps": 32})
    assert e.attributions.shape == (2, 2 * LENGTH) and e.extra["window_edges"] == [0, LENGTH]
    record = np.concatenate(list(windows), axis=-1)
    assert imread(plot_explanation(tmp_path / "record.png", record, e, fs=1024, channel_names=CHANNELS)).ndim == 3


def test_plots_draw_a_panel_per_channel(two_channel_model, tmp_path) -> None:
    window = _bursts()[0]
    e = explain(two_channel_model, "cnn1d", window, "integrated_gradients", {"n_steps": 32})
    two = imread(plot_explanation(tmp_path / "two.png", window, e, fs=1024, channel_names=CHANNELS))
    assert two.shape[0] > 500  # taller than the one-channel figure (500 px): a panel per channel
    with pytest.raises(InvalidInput, match="window has 1024 samples, explanation 2048"):
        plot_explanation(tmp_path / "bad.png", window[0], e, fs=1024)
    maps = activation_maps(two_channel_model, window, "cnn1d")
    assert maps.predicted_class == 1
    with pytest.raises(InvalidInput, match="takes windows of 2 channel"):
        activation_maps(two_channel_model, window[1], "cnn1d")
    assert imread(plot_activation_maps(tmp_path / "maps.png", window, maps, fs=1024, channel_names=CHANNELS)).ndim == 3
    # A batch's class means sum the channels' magnitudes: a time profile per class
    means = mean_abs_attribution_by_class([(1, e.attributions), (1, e.attributions)])
    np.testing.assert_allclose(means[1], np.abs(e.attributions).sum(axis=0))


def test_a_classical_model_on_two_channels_is_explained_by_each_channels_features(two_channel_data) -> None:
    from pipeline.models import build_model

    x, y = two_channel_data
    matrix = extract_window_features(x[:64], fs=1024, domains=["time"], channels=CHANNELS)
    forest = build_model("rf", {"n_estimators": 30, "k_features": 8}).fit(matrix.values, y[:64])

    def features(windows, shaft_hz):  # type: ignore[no-untyped-def]
        return extract_window_features(windows, fs=1024, domains=["time"], channels=CHANNELS, shaft_hz=shaft_hz)

    e = explain(forest, "rf", _bursts()[0], "shap", feature_fn=features)
    assert e.kind == "features" and e.feature_names == matrix.names
    # The burst lives on FE: the strongest features are FE's
    assert e.summary["top_features"][0]["name"].startswith("FE:")
