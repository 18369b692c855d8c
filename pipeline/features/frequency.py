"""Frequency-domain features (12) from one real FFT over every window at once."""

from __future__ import annotations

import numpy as np
from scipy import fft, stats

from pipeline.domain import OMEGA0_HZ
from pipeline.features._numeric import safe_ratio

__all__ = ["BANDS_HZ", "NAMES", "compute", "power_spectrum"]

# Band edges in Hz, [low, high): bearing faults separate into shaft harmonics (< 500 Hz),
# structural resonances, cavitation carriers (1.5–2.5 kHz) and broadband impacts.
BANDS_HZ: tuple[tuple[float, float], ...] = ((0, 500), (500, 2000), (2000, 5000), (5000, 10000))

NAMES: tuple[str, ...] = (
    "dominant_frequency",
    "spectral_centroid",
    "spectral_entropy",
    "band_energy_0_500",
    "band_energy_500_2000",
    "band_energy_2000_5000",
    "band_energy_5000_10000",
    "total_spectral_power",
    "spectral_std",
    "harmonic_ratio_2x",
    "harmonic_ratio_3x",
    "spectral_peakiness",
)

# Below this the dominant peak is drift, not a shaft order; the nominal speed stands in.
_MIN_1X_HZ = 10.0


def power_spectrum(x: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectrum of each row, DC removed, scaled so its sum is the variance.

    Returns ``(freqs [m], power [n, m])`` with ``m = L // 2 + 1``. The DC bin is zeroed: a
    sensor offset says nothing about the bearing.
    """
    n_samples = x.shape[1]
    power = np.abs(fft.rfft(x, axis=1)) ** 2 / n_samples**2
    # Every bin but DC and (for even L) Nyquist stands for a ± pair: count it twice (Parseval).
    last = power.shape[1] - 1 if n_samples % 2 == 0 else power.shape[1]
    power[:, 1:last] *= 2.0
    power[:, 0] = 0.0
    return fft.rfftfreq(n_samples, 1.0 / fs), power


def _amplitude_near(amplitude: np.ndarray, freq_hz: np.ndarray, df: float) -> np.ndarray:
    """Largest amplitude within ±1 bin of ``freq_hz`` (one per row), 0 beyond Nyquist.

    ±1 bin absorbs leakage when the order does not fall on a bin centre.
    """
    n_bins = amplitude.shape[1]
    centre = np.rint(freq_hz / df).astype(np.int64)
    idx = np.clip(centre[:, None] + np.arange(-1, 2)[None, :], 0, n_bins - 1)
    best = np.take_along_axis(amplitude, idx, axis=1).max(axis=1)
    return np.where(centre < n_bins, best, 0.0)


def compute(windows: np.ndarray, fs: int, shaft_hz: np.ndarray | None = None) -> np.ndarray:
    """Frequency-domain features of each window, vectorised over rows.

    Args:
        windows: ``[n, L]`` signal windows.
        fs: sampling rate in Hz.
        shaft_hz: ``[n]`` shaft speed of each window's recording in Hz (rpm / 60), NaN
            where it was not recorded; None: not recorded for any.

    Returns:
        ``[n, 12]`` float64 in ``NAMES`` order, all on the power spectrum ``P`` of
        ``power_spectrum`` (DC excluded) with ``p = P / ΣP``:
        dominant frequency (Hz, arg max P); spectral centroid ``Σ f p`` (Hz); spectral
        entropy ``-Σ p ln p / ln m`` in [0, 1]; band energies as fractions of ΣP for
        ``BANDS_HZ``; total spectral power ΣP (the variance); spectral std
        ``sqrt(Σ (f - centroid)² p)`` (Hz); 2X/1X and 3X/1X as amplitude ratios ``|X|``
        at 2·f1 and 3·f1 over f1 (peak within ±1 bin), where f1 is the recorded shaft speed
        when known, else the dominant frequency if above 10 Hz, else 60 Hz; spectral peakiness ``max P / mean P`` over non-DC bins.
        A window with no AC content (constant) gets 0 for every ratio and entropy.
    """
    x = np.asarray(windows, dtype=np.float64)
    freqs, power = power_spectrum(x, fs)
    df = freqs[1] - freqs[0]
    total = power.sum(axis=1)
    p = safe_ratio(power, total[:, None])

    dominant = freqs[np.argmax(power, axis=1)]
    # einsum rather than ``@``: a BLAS mat-vec may spawn threads that stall under contention.
    centroid = np.einsum("ij,j->i", p, freqs)
    deviation2 = (freqs[None, :] - centroid[:, None]) ** 2
    spread = np.sqrt(np.einsum("ij,ij->i", p, deviation2))
    entropy = np.zeros(x.shape[0])
    has_ac = total > 0
    if has_ac.any():
        entropy[has_ac] = stats.entropy(power[has_ac], axis=1) / np.log(power.shape[1])
    bands = [p[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in BANDS_HZ]

    amplitude = np.sqrt(power)
    f1 = np.where(dominant > _MIN_1X_HZ, dominant, OMEGA0_HZ)
    if shaft_hz is not None:
        # A measured speed names the 1X line; the dominant peak of a faulty bearing is
        # usually a resonance or a fault order, not the shaft.
        f1 = np.where(np.isnan(shaft_hz), f1, shaft_hz)
    a1 = _amplitude_near(amplitude, f1, df)
    ratio_2x = safe_ratio(_amplitude_near(amplitude, 2 * f1, df), a1)
    ratio_3x = safe_ratio(_amplitude_near(amplitude, 3 * f1, df), a1)
    peakiness = safe_ratio(power.max(axis=1), power[:, 1:].mean(axis=1))

    return np.column_stack(
        [dominant, centroid, entropy, *bands, total, spread, ratio_2x, ratio_3x, peakiness]
    )
