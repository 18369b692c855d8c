"""Fixtures for explanation tests: a synthetic burst task, a tiny CNN and classical models.

The class is decided by a burst at a KNOWN position (samples 448-576) on an otherwise quiet
signal of 1,024 samples; a tiny ``cnn1d`` learns it in about two seconds on one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

LENGTH = 1024
BURST = (448, 576)
# Each method's parameters for quick, still meaningful, explanations of the burst model.
FAST = {
    "shap": {"n_samples": 100, "background_size": 32},
    "lime": {"n_segments": 16, "n_samples": 300},
    "integrated_gradients": {"n_steps": 64},
    "gradcam": {},
    "kernel_shap": {"n_segments": 16, "n_samples": 200},
}


def burst_windows(
    n: int, seed: int, carriers: tuple[float, ...] = (0.2,)
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[n, 1024]`` (float32) and labels: 0 quiet, k ≥ 1 a burst of carrier k-1."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal((n, LENGTH))
    y = np.arange(n) % (len(carriers) + 1)
    start, end = BURST
    t = np.arange(end - start)
    for label, carrier in enumerate(carriers, start=1):
        amplitude = rng.uniform(0.5, 1.0, (int((y == label).sum()), 1))
        x[y == label, start:end] += (
            amplitude * np.sin(2 * np.pi * carrier * t) * np.hanning(end - start)
        )
    return x.astype(np.float32), y


@pytest.fixture(scope="session")
def burst_data() -> tuple[np.ndarray, np.ndarray]:
    return burst_windows(256, seed=0)


def train_burst_cnn(windows: np.ndarray, labels: np.ndarray, in_channels: int = 1) -> torch.nn.Module:
    """A 2-class cnn1d (width 4, one stage) trained 30 epochs on ``[n, C, L]`` windows; eval mode."""
    from pipeline.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn1d", {"num_classes": 2, "in_channels": in_channels, "width": 4, "depth": 1,
                                  "dropout": 0.0})
    x, y = torch.from_numpy(windows), torch.from_numpy(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval()


@pytest.fixture(scope="session")
def burst_model(burst_data):  # type: ignore[no-untyped-def]
    """The cnn1d trained to detect the burst; test accuracy 1.0."""
    model = train_burst_cnn(burst_data[0][:, None], burst_data[1])
    test_x, test_y = burst_windows(100, seed=1)
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(test_x)[:, None]).argmax(1).numpy() == test_y).mean()
    assert accuracy == 1.0
    return model


@pytest.fixture(scope="session")
def feature_data():  # type: ignore[no-untyped-def]
    """90 windows of 3 classes (quiet, slow burst, fast burst) and their 36 features."""
    from pipeline.features import extract_features

    x, y = burst_windows(90, seed=2, carriers=(0.05, 0.3))
    return x, y, extract_features(x).values


@pytest.fixture(scope="session")
def classical_models(feature_data):  # type: ignore[no-untyped-def]
    """Small fitted rf, gbm and svm pipelines on the 36 features."""
    from pipeline.models import build_model

    _, y, features = feature_data
    args = {
        "rf": {"n_estimators": 20, "k_features": 8},
        "gbm": {"max_iter": 10, "k_features": 8},
        "svm": {"k_features": 8, "calibration_folds": 3},
    }
    return {key: build_model(key, a).fit(features, y) for key, a in args.items()}
