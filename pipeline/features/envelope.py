"""Envelope features (4) from the Hilbert analytic signal of every window at once."""

from __future__ import annotations

import numpy as np
from scipy import fft, signal

from pipeline.features._numeric import moments

__all__ = ["NAMES", "compute"]

NAMES: tuple[str, ...] = (
    "envelope_rms",
    "envelope_kurtosis",
    "envelope_peak",
    "modulation_frequency",
)


def compute(windows: np.ndarray, fs: int) -> np.ndarray:
    """Envelope features of each window, vectorised over rows.

    The envelope is ``|hilbert(x - mean x)|``; removing the mean first keeps a DC offset
    from masquerading as a modulation depth.

    Args:
        windows: ``[n, L]`` signal windows.
        fs: sampling rate in Hz.

    Returns:
        ``[n, 4]`` float64 in ``NAMES`` order: envelope RMS; envelope excess kurtosis;
        envelope peak (max); modulation frequency in Hz, the arg max of the amplitude
        spectrum of the mean-removed envelope excluding DC (0 when the envelope is flat).
    """
    x = np.asarray(windows, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    env = np.abs(signal.hilbert(x, axis=1))
    spectrum = np.abs(fft.rfft(env - env.mean(axis=1, keepdims=True), axis=1))
    spectrum[:, 0] = 0.0
    peak_bin = np.argmax(spectrum, axis=1)
    # A flat envelope has an all-zero spectrum: arg max would pick bin 0, i.e. 0 Hz, as wanted.
    modulation = fft.rfftfreq(x.shape[1], 1.0 / fs)[peak_bin]
    return np.column_stack(
        [np.sqrt(np.mean(env * env, axis=1)), moments(env)[1], env.max(axis=1), modulation]
    )
