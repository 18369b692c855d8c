"""Numeric guards shared by the feature modules: ratios and moments that stay finite."""

from __future__ import annotations

import numpy as np

__all__ = ["constant_rows", "moments", "safe_ratio"]

# Below this the denominator is numerical dust: a ratio of two zeros is defined as 0.
_TINY = 1e-30


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Return ``num / den`` element-wise, with 0 wherever ``|den|`` is (near) zero."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    ok = np.abs(den) > _TINY
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=ok)


def constant_rows(x: np.ndarray, power: np.ndarray | None = None) -> np.ndarray:
    """Mask of rows whose variance is rounding noise next to ``power`` (default: mean square).

    A variance below 1e-18 of the row's power (std below 1e-9 of its RMS) means the row is
    constant up to rounding: shape statistics of it would describe float error, not signal.
    Pass the signal's power when judging derived rows (e.g. wavelet details) by it.
    """
    mean = x.mean(axis=1)
    variance = np.maximum(np.mean(x * x, axis=1) - mean * mean, 0.0)
    if power is None:
        power = variance + mean * mean
    return variance <= 1e-18 * power + _TINY


def moments(x: np.ndarray, power: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Skewness and excess (Fisher) kurtosis of each row, biased estimators.

    Same definitions as ``scipy.stats.skew``/``kurtosis`` with ``bias=True``, computed from
    one centring pass: scipy demeans and checks precision once per statistic, which made
    it the slowest step of feature extraction. Constant rows (``constant_rows`` with
    ``power``) get 0 for both, a Gaussian's values, instead of scipy's nan.
    """
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    sq = centred * centred
    m2 = sq.mean(axis=1)
    m3 = np.einsum("ij,ij->i", sq, centred) / x.shape[1]
    m4 = np.einsum("ij,ij->i", sq, sq) / x.shape[1]
    if power is None:
        power = m2 + mean * mean
    ok = m2 > 1e-18 * power + _TINY
    skew = np.where(ok, safe_ratio(m3, m2**1.5), 0.0)
    kurt = np.where(ok, safe_ratio(m4, m2 * m2) - 3.0, 0.0)
    return skew, kurt
