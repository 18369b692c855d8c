"""Gradient and perturbation methods on deep models: completeness, additivity, localisation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import MethodNotApplicable, StopRequested
from pipeline.xai import explain
from tests.xai.conftest import BURST, FAST, LENGTH, burst_windows

torch.set_num_threads(1)

def _burst_examples() -> np.ndarray:
    x, y = burst_windows(12, seed=3)
    return x[y == 1][:3]


def test_integrated_gradients_sum_to_the_logit_difference_within_one_percent(burst_model) -> None:
    # Given a trained CNN and enough integration steps
    window = _burst_examples()[0]
    # When the burst class is explained
    e = explain(burst_model, "cnn1d", window, "integrated_gradients", {"n_steps": 256})
    # Then sum(attributions) = F(x) − F(0) within 1 % (completeness)
    x = torch.from_numpy(np.stack([window, np.zeros_like(window)]))[:, None]
    with torch.no_grad():
        f = burst_model(x)[:, e.target_class].double().numpy()
    assert abs(e.attributions.sum() - (f[0] - f[1])) <= 0.01 * abs(f[0] - f[1])
    assert e.extra["ig_relative_delta"] < 0.01
    assert e.extra["f_x"] == pytest.approx(f[0], rel=1e-5)


def test_integrated_gradients_match_captum(burst_model) -> None:
    from captum.attr import IntegratedGradients

    window = _burst_examples()[1]
    e = explain(burst_model, "cnn1d", window, "integrated_gradients", {"n_steps": 32})
    x = torch.from_numpy(window)[None, None]
    reference = IntegratedGradients(lambda t: burst_model(t)[:, e.target_class]).attribute(
        x, baselines=torch.zeros_like(x), n_steps=32, method="gausslegendre"
    )
    expected = reference[0, 0].detach().double().numpy()
    assert np.allclose(e.attributions, expected, atol=1e-4 * np.abs(expected).max())


def test_gradient_shap_is_additive_for_a_linear_model() -> None:
    # Given a linear model: expected gradients are exact, w·(x − background)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    rng = np.random.default_rng(0)
    window, background = rng.standard_normal(64), rng.standard_normal((1, 64))
    e = explain(
        model,
        "cnn1d",
        window,
        "shap",
        {"n_samples": 60, "summary_segments": 8},
        background=background,
        class_index=2,
    )
    with torch.no_grad():
        f = model(torch.tensor(np.stack([window, background[0]]), dtype=torch.float32)[:, None])
    # Then base value + sum(SHAP) equals the model's output
    assert e.extra["shap_base_value"] == pytest.approx(float(f[1, 2]), abs=1e-5)
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(
        float(f[0, 2]), abs=1e-4
    )
    weight = model[1].weight[2].detach().double().numpy()
    assert np.allclose(e.attributions, weight * (window - background[0]), atol=1e-5)


def test_gradient_shap_on_a_trained_cnn_records_its_delta_and_stays_within_the_default_tolerance(burst_model):
    # Given a trained CNN, training-like background windows and the default sampling
    background, _ = burst_windows(32, seed=5)
    for window in _burst_examples():
        e = explain(burst_model, "cnn1d", window, "shap", {"background_size": 32}, background=background)
        with torch.no_grad():
            f_x = float(burst_model(torch.from_numpy(window)[None, None])[0, e.target_class])
        # Then base + sum(attributions) meets the logit within 5 %, and the result says by how much
        relative = abs(f_x - e.extra["shap_base_value"] - e.attributions.sum()) / abs(f_x - e.extra["shap_base_value"])
        assert e.extra["shap_relative_delta"] == pytest.approx(relative, rel=1e-4, abs=1e-9)
        assert relative <= 0.05 and e.extra["shap_converged"] is True and "warning" not in e.extra


def test_gradient_shap_estimates_what_shaps_gradient_explainer_estimates(burst_model) -> None:
    import shap

    # Given the same model, window and background, at many samples each
    window = _burst_examples()[0]
    background, _ = burst_windows(16, seed=6)
    e = explain(burst_model, "cnn1d", window, "shap", {"background_size": 16, "n_samples": 1024, "tolerance": 0.0,
                                                      "max_samples": 1024}, background=background)

    class Target(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return burst_model(t)[:, e.target_class : e.target_class + 1]

    explainer = shap.GradientExplainer(Target(), torch.from_numpy(background)[:, None])
    reference = np.asarray(explainer.shap_values(torch.from_numpy(window)[None, None], nsamples=4000, rseed=0))
    reference = reference.reshape(-1)
    # Then the two agree where the attributions are (shap's own noise aside) and ours is additive
    strong = np.abs(reference) > 0.1 * np.abs(reference).max()
    assert np.corrcoef(e.attributions[strong], reference[strong])[0, 1] > 0.9
    assert e.attributions.sum() == pytest.approx(reference.sum(), rel=0.1)


def test_gradient_shap_that_cannot_reach_its_tolerance_says_so_in_the_result(burst_model) -> None:
    window = _burst_examples()[2]
    background, _ = burst_windows(8, seed=7)
    e = explain(burst_model, "cnn1d", window, "shap",
                {"background_size": 8, "n_samples": 8, "max_samples": 8, "tolerance": 1e-9}, background=background)
    assert e.extra["shap_converged"] is False and e.extra["shap_samples_total"] == 8
    assert "additivity not reached" in e.extra["warning"] and "tolerance" in e.extra["warning"]
    assert e.to_dict()["extra"]["warning"] == e.extra["warning"]  # it reaches the job's summary


def test_kernel_shap_over_segments_is_additive(burst_model) -> None:
    window = _burst_examples()[0]
    e = explain(burst_model, "cnn1d", window, "kernel_shap", FAST["kernel_shap"])
    assert e.extra["shap_base_value"] + e.attributions.sum() == pytest.approx(
        e.confidence, abs=1e-6
    )


@pytest.mark.parametrize("method", list(FAST))
def test_method_puts_more_attribution_in_the_burst_than_outside(
    burst_model, burst_data, method
) -> None:
    # Given windows whose class is decided by a burst at a known position
    start, end = BURST
    inside = np.zeros(LENGTH, bool)
    inside[start:end] = True
    for window in _burst_examples():
        # When the predicted class (the burst) is explained
        e = explain(burst_model, "cnn1d", window, method, FAST[method], background=burst_data[0])
        assert e.predicted_class == 1 and e.kind == "signal"
        a = e.attributions
        # Then, per sample, the burst holds more (and positive) attribution than the rest
        assert np.abs(a[inside]).mean() > 2.0 * np.abs(a[~inside]).mean(), method
        assert a[inside].mean() > 0, method
        # and the top segment touches it, give or take one cell of the last conv layer
        # (64 samples: stem stride 8, pools 4 and 2), Grad-CAM's resolution
        top = e.summary["top_segments"][0]
        assert top["end"] > start - 64 and top["start"] < end + 64, method


@pytest.mark.parametrize("method", ["shap", "lime", "kernel_shap"])
def test_same_seed_gives_the_same_explanation(burst_model, burst_data, method) -> None:
    window = _burst_examples()[2]
    runs = [
        explain(
            burst_model,
            "cnn1d",
            window,
            method,
            {**FAST[method], "seed": seed},
            background=burst_data[0],
        ).attributions
        for seed in (7, 7, 8)
    ]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_gradcam_refuses_a_model_without_conv1d() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(LENGTH, 2)).eval()
    with pytest.raises(MethodNotApplicable, match="Conv1d"):
        explain(model, "cnn1d", np.zeros(LENGTH), "gradcam")


def test_gradcam_uses_the_last_conv1d_or_the_named_one(burst_model) -> None:
    window = _burst_examples()[0]
    names = [n for n, m in burst_model.named_modules() if isinstance(m, nn.Conv1d)]
    assert explain(burst_model, "cnn1d", window, "gradcam").extra["layer"] == names[-1]
    first = explain(burst_model, "cnn1d", window, "gradcam", {"layer": names[0]})
    assert first.extra["layer"] == names[0] and (first.attributions >= 0).all()


@pytest.mark.parametrize("method", ["lime", "integrated_gradients", "shap"])
def test_explanation_stops_when_asked(burst_model, burst_data, method) -> None:
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(StopRequested):
        explain(
            burst_model,
            "cnn1d",
            _burst_examples()[0],
            method,
            {**FAST[method], "batch_size": 8} if method != "shap" else FAST[method],
            background=burst_data[0],
            should_stop=should_stop,
        )


def test_progress_rises_to_one(burst_model) -> None:
    seen: list[float] = []
    explain(
        burst_model,
        "cnn1d",
        _burst_examples()[0],
        "lime",
        {**FAST["lime"], "batch_size": 50},
        on_progress=lambda fraction, status="", **m: seen.append(fraction),
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) > 3
    assert all(b >= a for a, b in itertools.pairwise(seen))


def test_explaining_another_class_than_the_predicted_one(burst_model) -> None:
    e = explain(burst_model, "cnn1d", _burst_examples()[0], "integrated_gradients", class_index=0)
    assert (e.predicted_class, e.target_class) == (1, 0)
    assert e.to_dict()["summary"]["top_segments"]
