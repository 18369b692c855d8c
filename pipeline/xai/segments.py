"""Perturbation methods over contiguous signal segments: LIME and Kernel SHAP, any model.

A window is cut into ``n_segments`` equal contiguous segments. A coalition (a 0/1 mask over
segments) keeps the "on" segments as they are and switches the "off" ones off: each is
replaced by its own mean (``off="mean"``: removes the segment's vibration content but keeps
its offset, so no artificial step appears) or by zeros (``off="zero"``). The model sees the
masked windows through ``predict_fn`` (windows ``[n, L]`` -> probabilities ``[n, C]``), so
the same code explains a CNN and a feature-based classifier.

The per-sample attribution spreads each segment's weight evenly over its samples, so the
attributions of a segment sum to its weight (Kernel SHAP's additivity survives).

A multi-channel window ``[C, L]`` is cut in time the same way: a segment is a time span of
every channel at once (the players stay ``n_segments``, so the sample budget buys the same
precision), each channel switched off to its own mean, and a segment's weight is spread
over its samples of every channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.xai.result import Attribution, segment_edges

__all__ = ["PredictFn", "kernel_shap_segments", "lime_segments", "masked_windows"]

PredictFn = Callable[[np.ndarray], np.ndarray]


def masked_windows(
    window: np.ndarray, masks: np.ndarray, edges: np.ndarray, off: str
) -> np.ndarray:
    """Windows ``[n, L]`` (or ``[n, C, L]``): ``window`` with the segments where ``masks [n, S]``
    is 0 switched off."""
    starts = edges[:-1]
    fill = np.add.reduceat(window, starts, axis=-1) / np.diff(edges) if off == "mean" else None
    out = np.repeat(window[None], masks.shape[0], axis=0)
    for s in range(masks.shape[1]):
        rows = masks[:, s] == 0
        if rows.any():
            out[rows, ..., edges[s] : edges[s + 1]] = 0.0 if fill is None else fill[..., s : s + 1]
    return out


def _spread(weights: np.ndarray, edges: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-sample attribution of a window of ``shape``: each segment's weight divided evenly
    over its samples (of every channel)."""
    channels = int(np.prod(shape[:-1], dtype=np.int64))
    per_sample = np.repeat(weights / (np.diff(edges) * channels), np.diff(edges))
    return np.broadcast_to(per_sample, shape).copy()


def _evaluate(
    predict_fn: PredictFn,
    window: np.ndarray,
    masks: np.ndarray,
    edges: np.ndarray,
    off: str,
    batch_size: int,
    on_progress: ProgressFn,
    should_stop: StopFn,
    done: list[int],
    expected: int,
) -> np.ndarray:
    """Probabilities ``[n, C]`` of the masked windows, batch by batch (stop checked per batch)."""
    out = []
    for start in range(0, masks.shape[0], batch_size):
        check_stop(should_stop)
        batch = masks[start : start + batch_size]
        out.append(np.asarray(predict_fn(masked_windows(window, batch, edges, off))))
        done[0] += batch.shape[0]
        on_progress(min(done[0] / expected, 1.0), "evaluating perturbations", samples=done[0])
    return np.concatenate(out, axis=0)


def lime_segments(
    predict_fn: PredictFn,
    window: np.ndarray,
    target: int,
    n_segments: int = 32,
    n_samples: int = 1000,
    off: str = "mean",
    kernel_width: float = 0.25,
    batch_size: int = 32,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """LIME over segments: a weighted ridge fit of the target probability on random masks.

    As ``lime_image`` does: the first sample is the unperturbed window, masks are uniform
    0/1, distances are cosine distances to the all-on mask, weights
    ``sqrt(exp(-d²/kernel_width²))``, and ``lime.lime_base.LimeBase`` fits every segment.
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    window = np.asarray(window, dtype=np.float32)
    edges = segment_edges(window.shape[-1], n_segments)
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, 2, size=(n_samples, n_segments)).astype(np.int8)
    masks[0] = 1
    probs = _evaluate(
        predict_fn, window, masks, edges, off, batch_size, on_progress, should_stop, [0], n_samples
    )
    distances = pairwise_distances(masks, masks[:1], metric="cosine").ravel()

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d**2) / kernel_width**2))

    base = LimeBase(kernel, random_state=seed)
    intercept, weights, score, local_pred = base.explain_instance_with_data(
        masks, probs, distances, target, n_segments, feature_selection="none"
    )
    segment_weights = np.zeros(n_segments)
    for index, weight in weights:
        segment_weights[index] = weight
    extra: dict[str, Any] = {
        "output": "probability",
        "lime_intercept": float(intercept),
        "lime_score": float(score),
        "lime_local_pred": float(np.ravel(local_pred)[0]),
        "segments": int(n_segments),
        "off": off,
    }
    return Attribution(_spread(segment_weights, edges, window.shape), extra)


def kernel_shap_segments(
    predict_fn: PredictFn,
    window: np.ndarray,
    target: int,
    n_segments: int = 32,
    n_samples: int = 512,
    off: str = "mean",
    batch_size: int = 32,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """``shap.KernelExplainer`` over segments: players are segments, "absent" means off.

    The reference is the all-off window, so ``shap_base_value`` + sum(attributions) equals
    the target probability of the window (Kernel SHAP's efficiency constraint).
    Note: shap draws coalitions from numpy's global RNG, which is seeded with ``seed``.
    """
    import shap

    window = np.asarray(window, dtype=np.float32)
    edges = segment_edges(window.shape[-1], n_segments)
    done = [0]
    # shap evaluates the reference and all coalitions; n_samples is its budget.
    expected = n_samples + 2

    def f(masks: np.ndarray) -> np.ndarray:
        probs = _evaluate(
            predict_fn,
            window,
            masks.astype(np.int8),
            edges,
            off,
            batch_size,
            on_progress,
            should_stop,
            done,
            expected,
        )
        return probs[:, target]

    explainer = shap.KernelExplainer(f, np.zeros((1, n_segments)))
    np.random.seed(seed)
    values = explainer.shap_values(
        np.ones((1, n_segments)), nsamples=n_samples, l1_reg=False, silent=True
    )
    segment_weights = np.asarray(values, dtype=np.float64).reshape(n_segments)
    extra = {
        "output": "probability",
        "shap_base_value": float(np.ravel(explainer.expected_value)[0]),
        "explainer": "KernelExplainer",
        "segments": int(n_segments),
        "off": off,
    }
    return Attribution(_spread(segment_weights, edges, window.shape), extra)
