"""A whole record explained (window attributions stitched on one axis) and activation maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import InvalidInput, MethodNotApplicable
from pipeline.xai import (
    activation_maps,
    explain,
    explain_record,
    plot_activation_maps,
    save_activation_maps,
)
from tests.xai.conftest import LENGTH, burst_windows

IG = {"n_steps": 32}


def _record() -> np.ndarray:
    """Three windows of one "record": quiet, burst, burst."""
    x, y = burst_windows(12, seed=4)
    return np.stack([x[y == 0][0], x[y == 1][0], x[y == 1][1]])


def test_a_record_is_explained_window_by_window_for_its_voted_class_on_one_axis(burst_model) -> None:
    windows = _record()
    e = explain_record(burst_model, "cnn1d", windows, "integrated_gradients", IG)
    # The record's class is the soft vote of its windows: two bursts out of three.
    assert e.predicted_class == e.target_class == 1 and len(e.probabilities) == 2
    assert e.attributions.shape == (3 * LENGTH,) and e.extra["window_edges"] == [0, LENGTH, 2 * LENGTH]
    # Each stretch is that window's own explanation of the record's class, in time order.
    for i, window in enumerate(windows):
        alone = explain(burst_model, "cnn1d", window, "integrated_gradients", IG, class_index=1)
        assert np.allclose(e.attributions[i * LENGTH:(i + 1) * LENGTH], alone.attributions)
    # The summary ranks segments over the whole record: the bursts, not the quiet window.
    assert all(s["start"] >= LENGTH for s in e.summary["top_segments"][:2])
    json.dumps(e.to_dict(), allow_nan=False)


def test_feature_attributions_of_a_classical_model_cannot_be_stitched(classical_models) -> None:
    with pytest.raises(MethodNotApplicable, match="no time axis to stitch"):
        explain_record(classical_models["rf"], "rf", _record(), "shap")


def test_activation_maps_capture_every_conv_layer_and_plot_them(burst_model, tmp_path) -> None:
    window = _record()[1]
    maps = activation_maps(burst_model, window, "cnn1d")
    convs = [n for n, m in burst_model.named_modules() if type(m).__name__ == "Conv1d"]
    assert list(maps.layers) == convs and all(a.ndim == 2 and a.shape[1] > 1 for a in maps.layers.values())
    assert maps.predicted_class == 1 and sum(maps.probabilities) == pytest.approx(1.0)
    # The first layer's activations are that convolution of the signal (nothing else ran before it).
    first = dict(burst_model.named_modules())[convs[0]]
    import torch

    with torch.no_grad():
        expected = first(torch.from_numpy(window)[None, None])[0].numpy()
    assert np.allclose(maps.layers[convs[0]], expected, atol=1e-6)
    saved = save_activation_maps(tmp_path / "a.npz", maps)
    with np.load(saved, allow_pickle=False) as data:
        assert np.allclose(data["layer_0"], maps.layers[convs[0]])
        assert json.loads(str(data["record"][()]))["layers"][0]["name"] == convs[0]
    png = plot_activation_maps(tmp_path / "a.png", window, maps, ("quiet", "burst"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_activation_maps_name_the_layers_when_one_asked_for_is_not_a_convolution(burst_model) -> None:
    with pytest.raises(MethodNotApplicable, match="not Conv1d layers of this model; Conv1d layers:"):
        activation_maps(burst_model, _record()[0], "cnn1d", layers="head")
    with pytest.raises(InvalidInput, match="not attributions"):
        explain(burst_model, "cnn1d", _record()[0], "activations")
