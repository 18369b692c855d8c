"""Classical training: the 36 features, an sklearn pipeline, the same test metrics as deep models."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.domain import FS
from pipeline.errors import InvalidInput
from pipeline.models.classical import save_classical
from pipeline.models.registry import CLASSICAL_KEYS, build_model, validate_model_args
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled
from pipeline.training.data import TrainingData
from pipeline.training.metrics import TrainingResult, evaluate_predictions, save_predictions

__all__ = ["MODEL_NAME", "PREDICTIONS_NAME", "FeaturesFn", "default_features", "train_classical"]

MODEL_NAME, PREDICTIONS_NAME = "model.skops", "test_predictions.npz"


class FeaturesFn(Protocol):
    """Feature rows ``[n, k]`` of windows ``[n, L]`` or ``[n, C, L]``; ``shaft_hz`` [n] is
    each window's recorded shaft speed in Hz (NaN where none, None when unknown for all)."""

    def __call__(self, windows: np.ndarray, on_progress: ProgressFn, should_stop: StopFn,
                 shaft_hz: np.ndarray | None = None) -> np.ndarray: ...


def default_features(
    windows: np.ndarray, on_progress: ProgressFn, should_stop: StopFn,
    shaft_hz: np.ndarray | None = None, fs: float = FS,
) -> np.ndarray:
    """Return the 36 DOMAIN.md features of each channel of ``windows`` sampled at ``fs``."""
    from pipeline.features.extract import extract_window_features

    return extract_window_features(windows, fs, on_progress=on_progress, should_stop=should_stop,
                                   shaft_hz=shaft_hz).values


def _full_proba(model: Any, X: np.ndarray, num_classes: int) -> np.ndarray:
    """Return probabilities over every class index, zero for classes absent from training."""
    proba = np.zeros((len(X), num_classes))
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(X)
    return proba


def train_classical(
    model_key: str,
    model_args: dict[str, Any] | None,
    data: TrainingData,
    features_fn: FeaturesFn | None,
    artifact_dir: str | os.PathLike[str],
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrainingResult:
    """Fit ``rf``, ``svm`` or ``gbm`` on train features; report val accuracy and test metrics.

    ``features_fn(windows, on_progress, should_stop, shaft_hz) -> [n, 36]``; ``None`` means
    ``default_features``. ``train_windows_per_s`` is the fit throughput. The fitted pipeline is saved with skops to
    ``artifact_dir/model.skops``; its SHA-256 is in the result, and
    ``pipeline.models.classical.load_classical`` checks it before loading.

    Raises:
        InvalidInput: unknown key or arguments, inconsistent data, non-finite features.
        StopRequested: ``should_stop()`` answered true.
    """
    started = time.perf_counter()
    if model_key not in CLASSICAL_KEYS:
        raise InvalidInput(
            f"{model_key!r} is not a classical model; valid: {', '.join(CLASSICAL_KEYS)}"
        )
    args = validate_model_args(model_key, model_args)
    num_classes = len(data.class_keys)
    data.validate(num_classes=num_classes)
    features = features_fn or functools.partial(default_features, fs=data.geometry.sampling_rate)
    matrices = {}
    for index, name in enumerate(("train", "val", "test")):
        check_stop(should_stop)
        report = scaled(on_progress, 0.6 * index / 3, 0.6 * (index + 1) / 3)
        # A group of records at a time for a stored split: features are small, windows are not.
        split = getattr(data, name)
        matrices[name] = np.vstack([
            np.asarray(features(windows, report, should_stop, shaft_hz=split.shaft_hz[positions]),
                       dtype=np.float64)
            for windows, positions in split.groups(None)
        ])
        if not np.isfinite(matrices[name]).all():
            raise InvalidInput(f"features of the {name} split are not all finite")

    check_stop(should_stop)
    on_progress(0.6, f"fitting {model_key}")
    fit_start = time.perf_counter()
    model = build_model(model_key, args)
    model.fit(matrices["train"], data.train.labels)
    fit_seconds = time.perf_counter() - fit_start
    check_stop(should_stop)
    val_acc = float((model.predict(matrices["val"]) == data.val.labels).mean())
    on_progress(0.8, "evaluating", val_acc=val_acc)

    probs = _full_proba(model, matrices["test"], num_classes)
    metrics = evaluate_predictions(probs, data.test.labels, data.test.record_ids, data.class_keys)
    directory = Path(artifact_dir)
    predictions_path = save_predictions(
        directory / PREDICTIONS_NAME, probs, data.test.labels, data.test.record_ids
    )
    model_path = directory / MODEL_NAME
    sha256 = save_classical(model, model_path)
    on_progress(1.0, "evaluated on test", val_acc=val_acc, test_accuracy=metrics.window_accuracy)
    return TrainingResult(
        model_key=model_key,
        model_args=args,
        config={},
        class_keys=list(data.class_keys),
        epochs_run=0,
        best_epoch=0,
        best_val_accuracy=val_acc,
        stopped_early=False,
        resumed_from_epoch=None,
        history=[],
        test=metrics.to_dict(),
        parameter_count=0,
        duration_s=time.perf_counter() - started,
        train_windows_per_s=len(data.train) / fit_seconds if fit_seconds else 0.0,
        data_wait_fraction=0.0,
        device="cpu",
        mixed_precision=False,
        model_path=str(model_path),
        model_sha256=sha256,
        last_checkpoint_path=None,
        predictions_path=str(predictions_path),
    )
