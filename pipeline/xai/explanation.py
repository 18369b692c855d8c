"""One entry point: explain one window's prediction with any method, deep or classical model.

What each method explains:

- deep ``shap`` / ``integrated_gradients`` / ``gradcam``: the target class's logit, one
  value per sample (``pipeline.xai.deep``);
- ``lime`` / ``kernel_shap`` on a deep model, ``kernel_shap`` on a classical one: the target
  class's probability, per contiguous segment spread over its samples
  (``pipeline.xai.segments``);
- classical ``shap`` / ``lime``: one value per feature (``pipeline.xai.classical``).

The target class is ``class_index`` when given, else the predicted class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput
from pipeline.models.registry import is_deep
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled
from pipeline.xai.registry import validate_method_params
from pipeline.xai.result import Attribution, Explanation, feature_summary, segment_summary

__all__ = ["FeatureFn", "explain", "feature_matrix"]

# Features [n, F] of windows [n, L], given each window's shaft speed in Hz (None: unknown).
FeatureFn = Callable[[np.ndarray, np.ndarray | None], Any]


def _check_window(window: np.ndarray) -> np.ndarray:
    """A real window ``[L]``, or ``[C, L]`` of several channels (``[1, L]`` is taken as ``[L]``)."""
    x = np.asarray(window)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim not in (1, 2) or x.shape[-1] < 2 or not np.issubdtype(x.dtype, np.number) \
            or np.iscomplexobj(x):
        raise InvalidInput(f"window must be a real signal [L] or [C, L], got shape {x.shape} ({x.dtype})")
    if not np.isfinite(x).all():
        raise InvalidInput("window holds NaN or inf")
    return x.astype(np.float32)


def _check_background(
    background: np.ndarray | None, shape: tuple[int, ...], size: int, seed: int,
    shaft_hz: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate background windows of the explained window's ``shape`` (and their ``[n]``
    shaft speeds, if given) and draw at most ``size`` of them (seeded)."""
    if background is None:
        return None, None
    bg = np.asarray(background)
    if bg.ndim != len(shape) + 1 or bg.shape[0] == 0 or bg.shape[1:] != shape:
        raise InvalidInput(f"background must be [n, {', '.join(map(str, shape))}] windows, got shape {bg.shape}")
    if not np.isfinite(bg).all():
        raise InvalidInput("background holds NaN or inf")
    speeds = None if shaft_hz is None else np.asarray(shaft_hz, dtype=np.float64)
    if speeds is not None and speeds.shape != (len(bg),):
        raise InvalidInput(f"background shaft speeds must be one per window ({len(bg)}), got {speeds.shape}")
    if len(bg) > size:
        picked = np.sort(np.random.default_rng(seed).choice(len(bg), size, replace=False))
        bg, speeds = bg[picked], None if speeds is None else speeds[picked]
    return bg.astype(np.float32), speeds


def _default_features(windows: np.ndarray, shaft_hz: np.ndarray | None = None) -> Any:
    from pipeline.features.extract import extract_window_features

    return extract_window_features(windows, shaft_hz=shaft_hz)


def feature_matrix(feature_fn: FeatureFn | None, windows: np.ndarray, shaft_hz: float | None = None) -> np.ndarray:
    """Features ``[n, F]`` (float64) of ``windows [n, L]`` by ``feature_fn`` (default: the 36),
    every window at shaft speed ``shaft_hz`` (Hz; None: not recorded)."""
    speeds = None if shaft_hz is None else np.full(len(windows), float(shaft_hz))
    return _as_matrix((feature_fn or _default_features)(windows, speeds))


def _as_matrix(out: Any) -> np.ndarray:
    return np.asarray(getattr(out, "values", out), dtype=np.float64)


def _target(class_index: int | None, predicted: int, valid: Callable[[int], bool]) -> int:
    target = predicted if class_index is None else class_index
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, np.integer))
        or not valid(int(target))
    ):
        raise InvalidInput(f"class_index {class_index!r} is not a class of this model")
    return int(target)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _deep(
    model: Any,
    x: np.ndarray,
    method: str,
    p: dict[str, Any],
    background: Any,
    class_index: int | None,
    progress: ProgressFn,
    should_stop: StopFn,
    timings: dict[str, float],
) -> tuple[Attribution, np.ndarray, int, int]:
    from pipeline.xai import deep, segments

    deep.check_channels(model, x)
    start = time.perf_counter()
    probs = deep.predict_proba(model, x[None])[0]
    predicted = int(np.argmax(probs))
    target = _target(class_index, predicted, lambda c: 0 <= c < probs.size)
    timings["predict_ms"] = _ms(start)
    check_stop(should_stop)

    def predict_fn(windows: np.ndarray) -> np.ndarray:
        return deep.predict_proba(model, windows, p["batch_size"])

    if method == "shap":
        bg = background if background is not None else np.zeros((1, *x.shape), np.float32)
        attribution = deep.shap_gradient(
            model, x, target, bg, p["n_samples"], p["batch_size"], p["seed"], p["tolerance"],
            p["max_samples"], progress, should_stop,
        )
        attribution.extra["background"] = "training windows" if background is not None else "zeros"
    elif method == "integrated_gradients":
        attribution = deep.integrated_gradients(
            model, x, target, p["n_steps"], p["batch_size"], progress, should_stop
        )
    elif method == "gradcam":
        attribution = deep.gradcam(model, x, target, p["layer"], progress, should_stop)
    elif method == "lime":
        attribution = segments.lime_segments(
            predict_fn,
            x,
            target,
            p["n_segments"],
            p["n_samples"],
            p["off"],
            p["kernel_width"] or 0.25,
            p["batch_size"],
            p["seed"],
            progress,
            should_stop,
        )
    else:  # kernel_shap
        attribution = segments.kernel_shap_segments(
            predict_fn,
            x,
            target,
            p["n_segments"],
            p["n_samples"],
            p["off"],
            p["batch_size"],
            p["seed"],
            progress,
            should_stop,
        )
    return attribution, probs, predicted, target


def _classical(
    model: Any,
    x: np.ndarray,
    method: str,
    p: dict[str, Any],
    background: Any,
    class_index: int | None,
    feature_fn: FeatureFn,
    speeds: tuple[float | None, np.ndarray | None],
    progress: ProgressFn,
    should_stop: StopFn,
    timings: dict[str, float],
) -> tuple[Attribution, np.ndarray, int, int, tuple[str, ...]]:
    from pipeline.features import FEATURE_NAMES
    from pipeline.xai import classical, segments

    shaft_hz, background_shaft_hz = speeds
    start = time.perf_counter()
    computed = feature_fn(x[None], None if shaft_hz is None else np.array([float(shaft_hz)]))
    features = _as_matrix(computed)[0]
    timings["features_ms"] = _ms(start)
    start = time.perf_counter()
    columns = model.predict_proba(features[None])[0]
    classes = [int(c) for c in model.classes_]
    probs = np.zeros(max(classes) + 1)
    probs[classes] = columns
    predicted = classes[int(np.argmax(columns))]
    target = _target(class_index, predicted, lambda c: c in classes)
    column = classical.class_column(model, target)
    timings["predict_ms"] = _ms(start)
    check_stop(should_stop)
    # A feature function that names its columns (a FeatureMatrix: "DE:rms" for several
    # channels) is taken at its word; else the 36 by count.
    given = tuple(getattr(computed, "names", ()))
    names = (
        given if len(given) == features.size
        else FEATURE_NAMES if features.size == len(FEATURE_NAMES)
        else tuple(f"feature_{i}" for i in range(features.size))
    )
    bg_features = None
    if background is not None and method in ("shap", "lime"):
        start = time.perf_counter()
        bg_features = _as_matrix(feature_fn(background, background_shaft_hz))
        timings["background_features_ms"] = _ms(start)
    if method == "shap":
        attribution = classical.shap_features(
            model,
            features,
            column,
            bg_features,
            p["n_samples"],
            p["background_size"],
            p["seed"],
            progress,
            should_stop,
        )
    elif method == "lime":
        attribution = classical.lime_features(
            model,
            features,
            column,
            names,
            bg_features,
            p["n_samples"],
            p["background_size"],
            p["kernel_width"] or None,
            p["seed"],
            progress,
            should_stop,
        )
    else:  # kernel_shap over signal segments, through the features

        def predict_fn(windows: np.ndarray) -> np.ndarray:
            return model.predict_proba(feature_matrix(feature_fn, windows, shaft_hz))

        attribution = segments.kernel_shap_segments(
            predict_fn,
            x,
            column,
            p["n_segments"],
            p["n_samples"],
            p["off"],
            p["batch_size"],
            p["seed"],
            progress,
            should_stop,
        )
    return attribution, probs, predicted, target, names


def explain(
    model: Any,
    model_key: str,
    window: np.ndarray,
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
    """Explain ``model``'s prediction on one window.

    Args:
        model: an eval-mode ``nn.Module`` (deep keys) or a fitted sklearn pipeline taking the
            feature vector (classical keys).
        model_key: the model's registry key (decides deep vs classical).
        window: the signal ``[L]`` (or ``[1, L]``), or ``[C, L]`` for a multi-channel model;
            signal attributions have the window's shape.
        method: a key of ``METHODS``; ``params`` are checked by ``validate_method_params``.
        background: training windows ``[n, L]`` (``[n, C, L]``); at most ``background_size`` are drawn
            (seeded). Deep ``shap`` without one uses a single zero window.
        class_index: the class to explain; default the predicted class.
        feature_fn: ``(windows [n, L] or [n, C, L], shaft_hz [n] or None)`` -> features
            ``[n, F]`` for classical models (a ``FeatureMatrix`` also names them); default
            ``extract_features`` (the 36 features).
        shaft_hz: the window's recorded shaft speed in Hz (None: not recorded), and
        background_shaft_hz: the background windows' (``[n]``, NaN where not recorded):
            a classical model's features place their 1X line there, as in training.

    Raises:
        InvalidInput: bad method, parameters, window, background or class.
        MethodNotApplicable: the method cannot explain this model.
        StopRequested: ``should_stop()`` answered true.
    """
    started = time.perf_counter()
    x = _check_window(window)
    p = validate_method_params(method, params, model_key=model_key, signal_length=x.shape[-1])
    if method == "activations":
        raise InvalidInput("'activations' draws activation maps, not attributions: use activation_maps")
    size = p.get("background_size", 100)
    bg, bg_speeds = _check_background(background, x.shape, size, p.get("seed", 0), background_shaft_hz)
    check_stop(should_stop)
    on_progress(0.0, "predicting")
    timings: dict[str, float] = {}
    progress = scaled(on_progress, 0.05, 0.95)
    names: tuple[str, ...] | None = None
    if is_deep(model_key):
        attribution, probs, predicted, target = _deep(
            model, x, method, p, bg, class_index, progress, should_stop, timings
        )
    else:
        attribution, probs, predicted, target, names = _classical(
            model,
            x,
            method,
            p,
            bg,
            class_index,
            feature_fn or _default_features,
            (shaft_hz, bg_speeds),
            progress,
            should_stop,
            timings,
        )
    values = np.asarray(attribution.values, dtype=np.float64)
    kind = "features" if names is not None and method in ("shap", "lime") else "signal"
    if kind == "features":
        summary = feature_summary(values, names or (), p["top_k"])
    else:
        segments = int(p["summary_segments"] if "summary_segments" in p else p["n_segments"])
        summary = segment_summary(values, segments, p["top_k"])
        names = None
    timings["total_ms"] = _ms(started)
    timings["explain_ms"] = timings["total_ms"] - sum(
        v for k, v in timings.items() if k not in ("total_ms",)
    )
    on_progress(1.0, "explained")
    return Explanation(
        method=method,
        model_key=model_key,
        kind=kind,
        predicted_class=predicted,
        confidence=float(probs[predicted]),
        target_class=target,
        attributions=values,
        summary=summary,
        timings_ms=timings,
        extra=attribution.extra,
        params=p,
        probabilities=[float(v) for v in probs],
        feature_names=names,
    )
