"""A whole record explained: each window explained for the record's class, stitched on one axis.

Models see 1 s windows; a record (5 s) is predicted by the soft vote of its windows. Each
window is explained for the class the record's vote predicts (or ``class_index``), so the
stitched attributions all speak of one class, and the summary ranks segments over the
whole record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput, MethodNotApplicable
from pipeline.models.registry import is_deep
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled
from pipeline.xai.explanation import FeatureFn, explain, feature_matrix
from pipeline.xai.result import Explanation, segment_summary

__all__ = ["explain_record"]


def _vote(model: Any, model_key: str, windows: np.ndarray, feature_fn: FeatureFn | None,
          shaft_hz: float | None) -> np.ndarray:
    """The record's probabilities: the mean of its windows' (the soft vote), over class indices."""
    if is_deep(model_key):
        from pipeline.xai.deep import predict_proba

        return predict_proba(model, windows).mean(axis=0)
    columns = model.predict_proba(feature_matrix(feature_fn, windows, shaft_hz)).mean(axis=0)
    classes = np.asarray(model.classes_, dtype=np.int64)
    probs = np.zeros(int(classes.max()) + 1)
    probs[classes] = columns
    return probs


def explain_record(
    model: Any,
    model_key: str,
    windows: np.ndarray,
    method: str,
    params: Mapping[str, Any] | None = None,
    background: np.ndarray | None = None,
    class_index: int | None = None,
    feature_fn: FeatureFn | None = None,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    shaft_hz: float | None = None,
    background_shaft_hz: np.ndarray | None = None,
) -> Explanation:
    """Explain a record's prediction: ``windows [k, L]`` (its 1 s windows, in time order), or
    ``[k, C, L]`` of a multi-channel model.

    ``shaft_hz`` is the record's shaft speed (Hz, None: not recorded) and
    ``background_shaft_hz`` the background windows', as ``explain`` takes them.

    The result is a ``"signal"`` explanation of ``k·L`` samples (``[C, k·L]``); ``extra`` holds
    ``window_edges`` (sample index where each window starts), each window's prediction and
    ``extra``, and a ``warning`` naming every window whose own result carried one.

    Raises:
        InvalidInput: not ``[k >= 1, L]`` or ``[k >= 1, C, L]`` windows; bad method, parameters
            or class.
        MethodNotApplicable: a method that gives per-feature values (classical ``shap`` /
            ``lime``): those have no time axis to stitch.
        StopRequested: ``should_stop()`` answered true.
    """
    started = time.perf_counter()
    x = np.asarray(windows)
    if x.ndim not in (2, 3) or x.shape[0] < 1:
        raise InvalidInput(f"a record is [k >= 1, L] or [k >= 1, C, L] windows, got shape {x.shape}")
    if not is_deep(model_key) and method in ("shap", "lime"):
        raise MethodNotApplicable(
            f"method {method!r} explains classical model {model_key!r} by its features, which have no time "
            "axis to stitch; explain the record's windows one by one, or use 'kernel_shap' over the signal")
    votes = _vote(model, model_key, x, feature_fn, shaft_hz)
    predicted = int(np.argmax(votes))
    target = predicted if class_index is None else class_index
    check_stop(should_stop)
    parts = []
    for index, window in enumerate(x):
        report = scaled(on_progress, index / len(x), (index + 1) / len(x))
        parts.append(explain(model, model_key, window, method, params, background=background, class_index=target,
                             feature_fn=feature_fn, on_progress=report, should_stop=should_stop,
                             shaft_hz=shaft_hz, background_shaft_hz=background_shaft_hz))
    values = np.concatenate([np.asarray(p.attributions, dtype=np.float64) for p in parts], axis=-1)
    first = parts[0]
    segments = int(first.params.get("summary_segments") or first.params["n_segments"]) * len(x)
    warnings = [f"window {i}: {p.extra['warning']}" for i, p in enumerate(parts) if "warning" in p.extra]
    extra: dict[str, Any] = {
        "windows": len(x),
        "window_edges": [i * x.shape[-1] for i in range(len(x))],
        "window_predictions": [p.predicted_class for p in parts],
        "window_extra": [p.extra for p in parts],
    }
    if warnings:
        extra["warning"] = "; ".join(warnings)
    total = (time.perf_counter() - started) * 1e3
    on_progress(1.0, "record explained")
    return Explanation(
        method=method, model_key=model_key, kind="signal", predicted_class=predicted,
        confidence=float(votes[predicted]), target_class=first.target_class, attributions=values,
        summary=segment_summary(values, min(segments, values.shape[-1]), int(first.params["top_k"])),
        timings_ms={"total_ms": total, "explain_ms": sum(p.timings_ms["explain_ms"] for p in parts)},
        extra=extra, params=first.params, probabilities=[float(v) for v in votes],
    )
