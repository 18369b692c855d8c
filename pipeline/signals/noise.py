"""Noise layers and augmentation of DOMAIN.md.

Every layer draws from its own child generator, so switching one layer off leaves the others
(and the fault signature) sample-for-sample unchanged: a clean record is the noisy one minus
its noise, which is what the signature tests rely on.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from pipeline.domain import FS
from pipeline.signals.config import AugmentationConfig, NoiseConfig

__all__ = ["QUANTIZATION_STEP", "augment", "noise_layers", "quantize"]

QUANTIZATION_STEP = 0.001
_TWO_PI = 2.0 * np.pi
_LAYERS = tuple(f.name for f in fields(NoiseConfig))
_IMPULSES_PER_SECOND = 2
_IMPULSE_LENGTH = 5


def _measurement(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return rng.normal(0.0, 0.03, t.size)


def _emi(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    f = rng.uniform(50.0, 60.0)
    amplitude = 0.01 * (1.0 + 0.5 * rng.uniform())
    return amplitude * np.sin(_TWO_PI * f * t + rng.uniform(0.0, _TWO_PI))


def _pink(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    walk = np.cumsum(rng.standard_normal(t.size))
    walk -= walk.mean()
    return 0.02 * walk / walk.std()


def _drift(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return 0.015 * np.sin(_TWO_PI * t / 1.5)


def _sensor_drift(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return np.linspace(0.0, 0.001, t.size)


def _aliasing(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # Both draws always happen so the layer's stream does not depend on the coin.
    happens = rng.uniform() < 0.10
    f = FS / 2.0 + rng.uniform(100.0, 300.0)
    if not happens:
        return np.zeros_like(t)
    # Sampled at FS, this tone folds back below Nyquist: that is the artefact simulated.
    return 0.005 * np.sin(_TWO_PI * f * t)


def _impulses(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    count = round(_IMPULSES_PER_SECOND * t.size / FS)
    out = np.zeros_like(t)
    positions = rng.integers(0, t.size - _IMPULSE_LENGTH + 1, size=count)
    amplitudes = rng.uniform(0.02, 0.05, size=count)
    shapes = amplitudes[:, None] * np.exp(-0.3 * np.arange(_IMPULSE_LENGTH))
    np.add.at(out, positions[:, None] + np.arange(_IMPULSE_LENGTH), shapes)
    return out


_ADDITIVE = {
    "measurement": _measurement,
    "emi": _emi,
    "pink": _pink,
    "drift": _drift,
    "sensor_drift": _sensor_drift,
    "aliasing": _aliasing,
    "impulses": _impulses,
}


def noise_layers(rng: np.random.Generator, noise: NoiseConfig, t: np.ndarray) -> np.ndarray:
    """Return the sum of the enabled additive layers (quantisation is applied separately)."""
    children = dict(zip(_LAYERS, rng.spawn(len(_LAYERS))))
    out = np.zeros_like(t)
    for name, layer in _ADDITIVE.items():
        if getattr(noise, name):
            out += layer(children[name], t)
    return out


def quantize(x: np.ndarray) -> np.ndarray:
    """ADC quantisation to a 0.001 step; applied last to the whole measured signal."""
    return np.round(x / QUANTIZATION_STEP) * QUANTIZATION_STEP


def augment(
    rng: np.random.Generator, config: AugmentationConfig, x: np.ndarray
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Apply the enabled augmentations; return the signal and what was applied (JSON-safe).

    Time shift rolls by up to ±2 % of the record, amplitude scale is 0.85-1.15, noise
    injection adds N(0, σ) with σ in 0.02-0.05. All draws happen whatever the switches so
    a switch never changes the other augmentations.
    """
    if not config.enabled:
        return x, None
    max_shift = int(0.02 * x.size)
    shift = int(rng.integers(-max_shift, max_shift + 1))
    scale = float(rng.uniform(0.85, 1.15))
    sigma = float(rng.uniform(0.02, 0.05))
    injected = rng.normal(0.0, sigma, x.size)
    applied: dict[str, Any] = {}
    if config.time_shift:
        x = np.roll(x, shift)
        applied["time_shift"] = shift
    if config.amplitude_scale:
        x = x * scale
        applied["amplitude_scale"] = scale
    if config.noise_injection:
        x = x + injected
        applied["noise_sigma"] = sigma
    return x, applied
