"""One HPO trial: train with the training pipeline, score on validation, report each epoch.

Trials never see the test split: ``train_deep`` ends by scoring its best weights on
``data.test``, so a trial trains on ``validation_only(data)`` whose "test" split is the
validation split, and the campaign scores only its best trial on the real test split, once
(``evaluate_on_test``). A classical trial (``run_classical_trial``) fits on the train
split's 36 features and scores on the validation split's; the features of a dataset are
extracted once per process and reused by every later trial on it (``cached_features``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from pipeline.progress import ProgressFn, StopFn, never_stop, no_progress
from pipeline.training.data import TrainingData
from pipeline.training.metrics import EpochRecord, TrainingResult

__all__ = ["TrialOutcome", "cached_features", "evaluate_on_test", "metric_value", "run_classical_trial", "run_trial",
           "validation_only"]

# What each metric reports per epoch (hyperband prunes on it); macro F1 is scored once, at the end.
_EPOCH_METRIC = {"val_accuracy": "val_acc", "val_loss": "val_loss", "val_f1_macro": None}
# Features of the last few datasets' splits, per process: a campaign's trials share a dataset.
_FEATURES: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_FEATURES_LOCK = threading.Lock()
_FEATURE_SETS_KEPT = 8


@dataclass(frozen=True)
class TrialOutcome:
    """A trial that ran: completed (``result`` set) or pruned at ``pruned_at_epoch``."""

    state: str
    value: float | None
    result: TrainingResult | None = None
    pruned_at_epoch: int | None = None


def validation_only(data: TrainingData) -> TrainingData:
    """Return ``data`` with its test split replaced by the validation split (see the module doc)."""
    return TrainingData(train=data.train, val=data.val, test=data.val, geometry=data.geometry)


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of ``[n, C]`` probabilities (clipped as scikit-learn's log_loss)."""
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1.0)
    return float(-np.log(picked).mean())


def metric_value(result: TrainingResult, metric: str) -> float:
    """Return a finished run's validation score (the run trained on ``validation_only`` data,
    so its ``test`` metrics are the validation split's): best accuracy, macro F1 of the best
    weights, lowest loss over its epochs, or for a classical fit the loss of its predictions."""
    if metric == "val_accuracy":
        return float(result.best_val_accuracy)
    if metric == "val_f1_macro":
        return float(result.test["f1_macro"])
    losses = [row["val_loss"] for row in result.history if row.get("val_loss") is not None]
    if losses:
        return float(min(losses))
    with np.load(result.predictions_path, allow_pickle=False) as saved:
        return _cross_entropy(saved["probabilities"].astype(np.float64), saved["labels"])


def run_trial(
    trial: optuna.Trial,
    metric: str,
    model_key: str,
    model_args: dict[str, Any],
    training: dict[str, Any],
    data: TrainingData,
    checkpoint_dir: str | os.PathLike[str],
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrialOutcome:
    """Train one trial's model, reporting the validation metric to ``trial`` after each epoch.

    The study's pruner (Hyperband for that method, else none) is asked after each report;
    a pruned trial stops there. A redelivered trial resumes from ``checkpoint_dir``.

    Raises:
        InvalidInput, CheckpointError, StopRequested: as ``train_deep`` raises them.
    """
    from pipeline.training.loop import train_deep

    key = _EPOCH_METRIC[metric]
    last: dict[str, Any] = {}

    def report(record: EpochRecord) -> None:
        if on_epoch is not None:
            on_epoch(record)
        if key is None:
            return
        last.update(epoch=record.epoch, value=getattr(record, key))
        # A resumed run reports its last epoch again; Optuna keeps the first report of a step.
        trial.report(getattr(record, key), record.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record.epoch}")

    try:
        result = train_deep(
            model_key, model_args, training, validation_only(data), checkpoint_dir,
            on_progress=on_progress, should_stop=should_stop, on_epoch=report,
        )
    except optuna.TrialPruned:
        return TrialOutcome("pruned", last.get("value"), pruned_at_epoch=last.get("epoch"))
    return TrialOutcome("complete", metric_value(result, metric), result=result)


def cached_features(data: TrainingData, dataset_key: str) -> Callable[..., np.ndarray]:
    """A ``features_fn`` for ``train_classical`` that extracts each split of ``data`` once per
    process, keyed by ``dataset_key`` (the dataset's id and checksum: a changed file is a new key)."""
    from pipeline.training.classical import default_features

    names = {id(data.train.windows): "train", id(data.val.windows): "val", id(data.test.windows): "test"}

    def features(windows: np.ndarray, on_progress: ProgressFn, should_stop: StopFn,
                 shaft_hz: np.ndarray | None = None) -> np.ndarray:
        key = (dataset_key, names[id(windows)])
        with _FEATURES_LOCK:
            found = _FEATURES.get(key)
        if found is None:
            found = default_features(windows, on_progress, should_stop, shaft_hz,
                                     fs=data.geometry.sampling_rate)
            with _FEATURES_LOCK:
                _FEATURES[key] = found
                while len(_FEATURES) > 3 * _FEATURE_SETS_KEPT:
                    _FEATURES.popitem(last=False)
        return found

    return features


def run_classical_trial(
    metric: str,
    model_key: str,
    model_args: dict[str, Any],
    data: TrainingData,
    dataset_key: str,
    artifact_dir: str | os.PathLike[str],
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TrialOutcome:
    """Fit one classical trial on the train features and score it on the validation split's.

    Raises:
        InvalidInput, StopRequested: as ``train_classical`` raises them.
    """
    from pipeline.training.classical import train_classical

    features = cached_features(data, dataset_key)
    result = train_classical(model_key, model_args, validation_only(data), features, artifact_dir,
                             on_progress=on_progress, should_stop=should_stop)
    return TrialOutcome("complete", metric_value(result, metric), result=result)


def evaluate_on_test(model_path: str | os.PathLike[str], data: TrainingData, batch_size: int = 64,
                     model_key: str | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Score a saved model (a deep checkpoint, or a classical one when ``model_key`` names it) on
    the test split; return the test metrics, with the mean cross-entropy as ``loss``, as JSON."""
    from pipeline.evaluation.predictors import load_predictor
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.loop import predict_split
    from pipeline.training.metrics import evaluate_predictions

    if model_key is not None:
        predictor = load_predictor(model_key, model_path, len(data.class_keys), sha256=sha256, batch_size=batch_size,
                                   fs=data.geometry.sampling_rate)
        # A group of records at a time: a split larger than memory is never read whole.
        probs = np.concatenate([predictor.predict_proba(windows, data.test.shaft_hz[positions])
                                for windows, positions in data.test.groups(None)])
    else:
        model, _ = load_checkpoint(model_path, map_location="cpu")
        probs = predict_split(model, data.test, batch_size, "cpu")
    metrics = evaluate_predictions(probs, data.test.labels, data.test.record_ids, data.class_keys).to_dict()
    return {**metrics, "loss": _cross_entropy(np.asarray(probs, dtype=np.float64), data.test.labels)}
