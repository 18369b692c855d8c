"""Wavelet (db4, level 5) and cepstral features (7) of every window at once."""

from __future__ import annotations

import numpy as np
import pywt
from scipy import fft

from pipeline.features._numeric import constant_rows, moments, safe_ratio

__all__ = ["LEVEL", "NAMES", "QUEFRENCY_MIN_S", "WAVELET", "compute"]

WAVELET = "db4"
LEVEL = 5
# Quefrencies below 1 ms describe the spectral envelope (the transfer path), not a
# periodicity of the source; above L/2 the real cepstrum mirrors itself.
QUEFRENCY_MIN_S = 1e-3

NAMES: tuple[str, ...] = (
    "wavelet_energy_ratio",
    "wavelet_kurtosis",
    "wavelet_energy_d1",
    "wavelet_energy_d3",
    "wavelet_energy_d5",
    "cepstral_peak_ratio",
    "quefrency_centroid",
)


def _cepstrum(x: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """Real cepstrum magnitude over the kept quefrency range: ``(quefrencies s, |c| [n, q])``."""
    n_samples = x.shape[1]
    magnitude = np.abs(fft.rfft(x, axis=1))
    # A floor relative to each row's peak keeps log() finite on empty bins (and on a
    # constant window, whose spectrum is zero apart from DC).
    floor = 1e-12 * magnitude.max(axis=1, keepdims=True) + 1e-300
    cepstrum = np.abs(fft.irfft(np.log(magnitude + floor), n=n_samples, axis=1))
    lo = max(1, int(np.ceil(QUEFRENCY_MIN_S * fs)))
    hi = max(lo + 1, n_samples // 2)
    return np.arange(lo, hi) / fs, cepstrum[:, lo:hi]


def compute(windows: np.ndarray, fs: int) -> np.ndarray:
    """Wavelet and cepstral features of each window, vectorised over rows.

    Args:
        windows: ``[n, L]`` signal windows (L ≥ 256 so that level 5 of db4 is meaningful).
        fs: sampling rate in Hz.

    Returns:
        ``[n, 7]`` float64 in ``NAMES`` order. With ``E_j`` the energy (sum of squares) of
        each sub-band of ``pywt.wavedec(x, "db4", level=5)`` and ``E = Σ E_j``:
        energy ratio ``E_A5 / E`` (share of the approximation, below fs/64); wavelet
        kurtosis, the excess kurtosis of the D1 coefficients (top octave, where impacts
        show); relative energies ``E_D1 / E``, ``E_D3 / E``, ``E_D5 / E``. On the real
        cepstrum ``c = irfft(ln |rfft(x)|)`` restricted to quefrencies 1 ms … L/2:
        cepstral peak ratio ``max |c| / mean |c|``; quefrency centroid
        ``Σ q |c| / Σ |c|`` in seconds. All-zero windows give 0 for every ratio.
    """
    x = np.asarray(windows, dtype=np.float64)
    # Coefficients are [A5, D5, D4, D3, D2, D1].
    coeffs = pywt.wavedec(x, WAVELET, level=LEVEL, axis=1)
    energies = np.column_stack([np.sum(c * c, axis=1) for c in coeffs])
    total = energies.sum(axis=1)
    a5, d5, d3, d1 = energies[:, 0], energies[:, 1], energies[:, 3], energies[:, 5]

    # Rounding noise of a constant window must not read as a shape: judge D1's spread
    # against the signal's magnitude, not its own.
    power = np.mean(x * x, axis=1)
    constant = constant_rows(x, power)
    d1_kurtosis = moments(coeffs[-1], power=power)[1]

    quefrencies, ceps = _cepstrum(x, fs)
    # A constant window has no spectrum beyond DC, hence no periodicity for the cepstrum.
    ceps[constant] = 0.0
    ceps_sum = ceps.sum(axis=1)
    return np.column_stack(
        [
            safe_ratio(a5, total),
            d1_kurtosis,
            safe_ratio(d1, total),
            safe_ratio(d3, total),
            safe_ratio(d5, total),
            safe_ratio(ceps.max(axis=1), ceps.mean(axis=1)),
            safe_ratio(np.einsum("ij,j->i", ceps, quefrencies), ceps_sum),
        ]
    )
