"""Time-domain features (7): amplitude level and the shape of the amplitude distribution."""

from __future__ import annotations

import numpy as np

from pipeline.features._numeric import moments, safe_ratio

__all__ = ["NAMES", "compute"]

NAMES: tuple[str, ...] = (
    "rms",
    "kurtosis",
    "skewness",
    "crest_factor",
    "shape_factor",
    "impulse_factor",
    "clearance_factor",
)


def compute(windows: np.ndarray, fs: int) -> np.ndarray:
    """Time-domain features of each window, vectorised over rows.

    Args:
        windows: ``[n, L]`` signal windows.
        fs: sampling rate in Hz (unused here; every domain module takes it).

    Returns:
        ``[n, 7]`` float64 in ``NAMES`` order: RMS; excess kurtosis; skewness; crest factor
        ``max|x| / rms``; shape factor ``rms / mean|x|``; impulse factor
        ``max|x| / mean|x|``; clearance factor ``max|x| / mean(sqrt|x|)²``. A ratio whose
        denominator is zero (an all-zero window) is 0; a constant window has kurtosis and
        skewness 0.
    """
    x = np.asarray(windows, dtype=np.float64)
    ax = np.abs(x)
    rms = np.sqrt(np.mean(x * x, axis=1))
    peak = ax.max(axis=1)
    mean_abs = ax.mean(axis=1)
    sqrt_mean_sq = np.mean(np.sqrt(ax), axis=1) ** 2
    skew, kurt = moments(x)
    return np.column_stack(
        [
            rms,
            kurt,
            skew,
            safe_ratio(peak, rms),
            safe_ratio(rms, mean_abs),
            safe_ratio(peak, mean_abs),
            safe_ratio(peak, sqrt_mean_sq),
        ]
    )
