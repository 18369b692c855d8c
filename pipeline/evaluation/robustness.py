"""Accuracy under additive white Gaussian noise at given SNRs, overall and by class."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress

__all__ = ["DEFAULT_SNR_DB", "add_awgn", "robustness_in_groups", "robustness_report"]

# A group of test windows: windows [n, L] or [n, C, L], labels [n], shaft speeds [n] or None.
Group = tuple[np.ndarray, np.ndarray, np.ndarray | None]

DEFAULT_SNR_DB: tuple[float, ...] = (20.0, 10.0, 5.0)


def add_awgn(windows: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``windows`` plus white Gaussian noise ``snr_db`` below each window's clean RMS
    (each channel's, for ``[n, C, L]`` windows).

    The noise power of a window is ``P_clean / 10^(snr/10)`` with ``P_clean`` the mean
    square of that window, so every window sees the same SNR whatever its amplitude. A
    silent window stays silent.
    """
    x = np.asarray(windows, dtype=np.float64)
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True))
    noise_std = rms / 10.0 ** (snr_db / 20.0)
    return (x + noise_std * rng.standard_normal(x.shape)).astype(np.float32)


def _scores(predicted: np.ndarray, labels: np.ndarray, class_keys: Sequence[str]) -> dict[str, Any]:
    correct = predicted == labels
    # Only the classes the windows hold: a 3-class dataset reports 3, not 8 empty rows.
    by_class = {class_keys[k]: float(correct[labels == k].mean()) for k in sorted(set(labels.tolist()))}
    return {"accuracy": float(correct.mean()), "by_class": by_class}


def robustness_report(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    windows: np.ndarray,
    labels: np.ndarray,
    class_keys: Sequence[str],
    snr_db: Sequence[float] = DEFAULT_SNR_DB,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> dict[str, Any]:
    """Accuracy of ``predict_proba`` on clean windows and at each SNR, overall and per class.

    The noise of each level comes from its own generator seeded from ``seed`` and the SNR
    (in milli-dB), so a report is reproducible and a level's draw does not depend on which
    other levels were asked for.

    Returns:
        ``{"clean": {"accuracy", "by_class"}, "levels": [{"snr_db", "accuracy", "by_class",
        "drop"}], "seed", "n_windows"}`` where ``drop`` is clean minus noisy accuracy.

    Raises:
        InvalidInput: bad shapes, labels outside the classes, no SNR given.
        StopRequested: ``should_stop()`` answered true between levels.
    """
    return robustness_in_groups(lambda x, _: predict_proba(x), [(windows, labels, None)], class_keys, snr_db,
                                seed, on_progress, should_stop, total=len(labels))


def robustness_in_groups(
    predict_proba: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    groups: Iterable[Group],
    class_keys: Sequence[str],
    snr_db: Sequence[float] = DEFAULT_SNR_DB,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    total: int | None = None,
) -> dict[str, Any]:
    """``robustness_report`` over test windows that come a group at a time (a split larger
    than memory), with the same figures: each level's noise generator runs on from group to
    group, so the noise equals one draw over all the windows. ``predict_proba(windows,
    shaft_hz)``; ``total`` (the windows to come, if known) scales the progress.
    """
    if not snr_db:
        raise InvalidInput("give at least one SNR level")
    rngs = [np.random.default_rng([seed, round(float(snr) * 1000) % (1 << 32)]) for snr in snr_db]
    predicted: list[list[np.ndarray]] = [[] for _ in range(len(snr_db) + 1)]  # clean, then each level
    seen: list[np.ndarray] = []
    for windows, labels, shaft_hz in groups:
        x, y = np.asarray(windows), np.asarray(labels, dtype=np.int64)
        if x.ndim not in (2, 3) or x.shape[0] == 0 or y.shape != (x.shape[0],):
            raise InvalidInput(f"windows [n > 0, L] or [n > 0, C, L] and labels [n] needed, got {x.shape} and {y.shape}")
        if y.min() < 0 or y.max() >= len(class_keys):
            raise InvalidInput(f"labels must lie in [0, {len(class_keys)})")
        check_stop(should_stop)
        predicted[0].append(predict_proba(x, shaft_hz).argmax(axis=1))
        for index, snr in enumerate(snr_db):
            check_stop(should_stop)
            predicted[index + 1].append(predict_proba(add_awgn(x, float(snr), rngs[index]), shaft_hz).argmax(axis=1))
        seen.append(y)
        done = sum(len(s) for s in seen)
        on_progress(min(done / total, 1.0) if total else 0.0, "windows under noise", windows=done)
    if not seen:
        raise InvalidInput("no test windows to score")
    y = np.concatenate(seen)
    clean = _scores(np.concatenate(predicted[0]), y, class_keys)
    levels = []
    for index, snr in enumerate(snr_db):
        noisy = _scores(np.concatenate(predicted[index + 1]), y, class_keys)
        levels.append({"snr_db": float(snr), **noisy, "drop": clean["accuracy"] - noisy["accuracy"]})
    return {"clean": clean, "levels": levels, "seed": int(seed), "n_windows": int(y.size)}
