"""The 36 features of DOMAIN.md, computed for many windows at once (or one at a time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from pipeline.domain import FS
from pipeline.errors import InvalidInput
from pipeline.features import bispectrum, envelope, frequency, time_domain, wavelet
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled

__all__ = [
    "DOMAINS",
    "FEATURE_NAMES",
    "MIN_WINDOW_LENGTH",
    "FeatureMatrix",
    "extract_features",
    "extract_features_loop",
    "extract_window_features",
    "feature_names",
    "window_feature_names",
]

_MODULES: dict[str, ModuleType] = {
    "time": time_domain,
    "frequency": frequency,
    "envelope": envelope,
    "wavelet": wavelet,
    "bispectrum": bispectrum,
}
DOMAINS: tuple[str, ...] = tuple(_MODULES)
FEATURE_NAMES: tuple[str, ...] = tuple(name for m in _MODULES.values() for name in m.NAMES)
# The bispectrum needs one 512-sample segment; shorter windows make every domain meaningless.
MIN_WINDOW_LENGTH = bispectrum.NFFT
# Bytes of float64 samples per vectorised call. Per window, blocks of 8 windows of 20,480
# samples (1.3 MB) ran fastest on every domain here (1.8x one window per call); 32 windows
# (5 MB) ran no faster than one, their temporaries falling out of cache.
_BLOCK_BYTES = 8 * 20_480 * 8


@dataclass(frozen=True)
class FeatureMatrix:
    """Feature values ``[n_windows, n_features]`` (float64) and their column names."""

    values: np.ndarray
    names: tuple[str, ...]


def _resolve(domains: Sequence[str]) -> tuple[str, ...]:
    """Validate domain names; return them once each, in the canonical ``DOMAINS`` order."""
    if isinstance(domains, str):
        domains = (domains,)
    unknown = [d for d in domains if d not in _MODULES]
    if unknown or not domains:
        raise InvalidInput(
            f"unknown feature domain(s) {unknown or '(none given)'}; valid: {', '.join(DOMAINS)}"
        )
    # Canonical order, so that a column's position never depends on how a caller listed them.
    return tuple(d for d in DOMAINS if d in domains)


def feature_names(domains: Sequence[str] = DOMAINS) -> tuple[str, ...]:
    """Column names ``extract_features`` returns for ``domains``."""
    return tuple(name for d in _resolve(domains) for name in _MODULES[d].NAMES)


def _validate(windows: np.ndarray, fs: int) -> np.ndarray:
    """Check shape, length, rate and finiteness; return the windows as an array."""
    x = np.asarray(windows)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInput(f"windows must be a non-empty [n, L] array, got shape {x.shape}")
    if x.shape[1] < MIN_WINDOW_LENGTH:
        raise InvalidInput(f"windows need at least {MIN_WINDOW_LENGTH} samples, got {x.shape[1]}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InvalidInput(f"windows must be real numbers, got dtype {x.dtype}")
    if fs <= 0:
        raise InvalidInput(f"sampling rate must be positive, got {fs}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InvalidInput(
            f"{int(bad.sum())} window(s) hold NaN or inf, first at row {int(np.argmax(bad))}"
        )
    return x


def _shaft_speeds(shaft_hz: np.ndarray | float | None, n: int) -> np.ndarray | None:
    """Per-window shaft speeds in Hz (NaN: not recorded) from one value or ``[n]`` values."""
    if shaft_hz is None:
        return None
    speeds = np.broadcast_to(np.asarray(shaft_hz, dtype=np.float64), (n,)) if np.ndim(shaft_hz) == 0 \
        else np.asarray(shaft_hz, dtype=np.float64)
    if speeds.shape != (n,):
        raise InvalidInput(f"shaft speeds must be one value or one per window ({n}), got shape {speeds.shape}")
    known = speeds[~np.isnan(speeds)]
    if not np.isfinite(known).all() or (known <= 0).any():
        raise InvalidInput("a shaft speed must be a positive number of Hz (NaN where not recorded)")
    return speeds


def _compute(windows: np.ndarray, fs: int, domains: tuple[str, ...],
             shaft_hz: np.ndarray | None = None) -> np.ndarray:
    """Features of some windows, vectorised over cache-sized blocks; overflow becomes 0."""
    blocks = []
    per_block = max(1, _BLOCK_BYTES // (8 * windows.shape[1]))
    for start in range(0, windows.shape[0], per_block):
        block = np.asarray(windows[start : start + per_block], dtype=np.float64)
        # Only the frequency domain has a 1X line to place.
        speeds = None if shaft_hz is None else shaft_hz[start : start + per_block]
        blocks.append(np.hstack([
            frequency.compute(block, fs, speeds) if d == "frequency" else _MODULES[d].compute(block, fs)
            for d in domains]))
    values = np.vstack(blocks)
    # The modules guard their ratios; this only catches overflow on absurd amplitudes, so
    # that one bad window cannot poison a model's standardisation.
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def extract_features(
    windows: np.ndarray,
    fs: int = FS,
    domains: Sequence[str] = DOMAINS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    chunk_size: int = 256,
    shaft_hz: np.ndarray | float | None = None,
) -> FeatureMatrix:
    """Compute features for every window, each domain vectorised over chunks of windows.

    Every value is finite: ratios with a zero denominator are 0 and a constant window has
    kurtosis and skewness 0 (see each domain module for the exact definitions).

    Args:
        windows: ``[n, L]`` real signal windows (float32 or float64), L ≥ 512.
        fs: sampling rate in Hz.
        domains: any of ``DOMAINS``; columns always come in ``DOMAINS`` order.
        on_progress: called after each chunk with the fraction done and ``windows=``.
        should_stop: checked before each chunk.
        chunk_size: windows between progress reports and stop checks (each chunk is
            computed in vectorised blocks of about 1.3 MB of samples, which bounds memory).
        shaft_hz: the shaft speed in Hz (rpm / 60) of every window, or one per window (NaN
            where not recorded): it places the frequency domain's 1X line.

    Returns:
        ``FeatureMatrix`` with ``values [n, k]`` float64 and the ``k`` names.

    Raises:
        InvalidInput: unknown domain, bad shape, NaN/inf in the windows, chunk_size < 1, a
            shaft speed that is not positive or not one per window.
        StopRequested: ``should_stop()`` answered true.
    """
    selected = _resolve(domains)
    x = _validate(windows, fs)
    if chunk_size < 1:
        raise InvalidInput(f"chunk_size must be at least 1, got {chunk_size}")
    n = x.shape[0]
    speeds = _shaft_speeds(shaft_hz, n)
    values = np.empty((n, len(feature_names(selected))))
    for start in range(0, n, chunk_size):
        check_stop(should_stop)
        stop = min(start + chunk_size, n)
        values[start:stop] = _compute(x[start:stop], fs, selected, None if speeds is None else speeds[start:stop])
        on_progress(stop / n, "extracting features", windows=stop)
    return FeatureMatrix(values=values, names=feature_names(selected))


def extract_window_features(
    windows: np.ndarray,
    fs: float = FS,
    domains: Sequence[str] = DOMAINS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    channels: Sequence[str] | None = None,
    shaft_hz: np.ndarray | float | None = None,
) -> FeatureMatrix:
    """``extract_features`` of one-channel ``[n, L]`` or multi-channel ``[n, C, L]`` windows.

    Each channel gets every feature; columns run channel by channel, named
    ``"<channel>:<feature>"`` when there are several (``channels`` names them, else ``ch<k>``).
    ``shaft_hz`` as for ``extract_features`` (every channel of a window shares its shaft).
    """
    x = np.asarray(windows)
    if x.ndim != 3:
        return extract_features(x, fs, domains, on_progress, should_stop, shaft_hz=shaft_hz)
    names = list(channels) if channels is not None else [f"ch{k}" for k in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise InvalidInput(f"{len(names)} channel names for windows of {x.shape[1]} channels")
    parts = []
    for k in range(len(names)):
        report = scaled(on_progress, k / len(names), (k + 1) / len(names))
        parts.append(extract_features(x[:, k], fs, domains, report, should_stop, shaft_hz=shaft_hz).values)
    return FeatureMatrix(np.hstack(parts), window_feature_names(domains, names))


def window_feature_names(domains: Sequence[str], channels: Sequence[str]) -> tuple[str, ...]:
    """Column names of ``extract_window_features``: plain for one channel, ``"<channel>:<name>"``
    channel by channel for several."""
    names = feature_names(domains)
    if len(channels) == 1:
        return names
    return tuple(f"{channel}:{name}" for channel in channels for name in names)


def extract_features_loop(
    windows: np.ndarray,
    fs: int = FS,
    domains: Sequence[str] = DOMAINS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    shaft_hz: np.ndarray | float | None = None,
) -> FeatureMatrix:
    """The same features, one ``[1, L]`` window per call: the baseline for benchmarks.

    Same maths as ``extract_features`` (it calls the same domain functions); only the
    batching differs, so the two agree to rounding.
    """
    selected = _resolve(domains)
    x = _validate(windows, fs)
    n = x.shape[0]
    speeds = _shaft_speeds(shaft_hz, n)
    values = np.empty((n, len(feature_names(selected))))
    for i in range(n):
        check_stop(should_stop)
        values[i] = _compute(x[i : i + 1], fs, selected, None if speeds is None else speeds[i : i + 1])[0]
        on_progress((i + 1) / n, "extracting features", windows=i + 1)
    return FeatureMatrix(values=values, names=feature_names(selected))
