"""One HPO trial: train with the training pipeline, score on validation, report each epoch.

Trials never see the test split: ``train_deep`` ends by scoring its best weights on
``data.test``, so a trial trains on ``validation_only(data)`` whose "test" split is the
validation split, and the campaign scores only its best trial on the real test split, once
(``evaluate_on_test``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from pipeline.progress import ProgressFn, StopFn, never_stop, no_progress
from pipeline.training.data import TrainingData
from pipeline.training.metrics import EpochRecord, TrainingResult

__all__ = ["TrialOutcome", "evaluate_on_test", "metric_value", "run_trial", "validation_only"]

_EPOCH_METRIC = {"val_accuracy": "val_acc", "val_loss": "val_loss"}


@dataclass(frozen=True)
class TrialOutcome:
    """A trial that ran: completed (``result`` set) or pruned at ``pruned_at_epoch``."""

    state: str
    value: float | None
    result: TrainingResult | None = None
    pruned_at_epoch: int | None = None


def validation_only(data: TrainingData) -> TrainingData:
    """Return ``data`` with its test split replaced by the validation split (see the module doc)."""
    return TrainingData(train=data.train, val=data.val, test=data.val, class_keys=data.class_keys)


def metric_value(result: TrainingResult, metric: str) -> float:
    """Return a finished run's validation score: best accuracy, or lowest loss over its epochs."""
    if metric == "val_accuracy":
        return float(result.best_val_accuracy)
    losses = [row["val_loss"] for row in result.history if row.get("val_loss") is not None]
    return float(min(losses)) if losses else float("inf")


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


def evaluate_on_test(model_path: str | os.PathLike[str], data: TrainingData, batch_size: int = 64) -> dict[str, Any]:
    """Score a trained checkpoint on the test split; return the test metrics as JSON."""
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.inference import predict_proba
    from pipeline.training.metrics import evaluate_predictions

    model, _ = load_checkpoint(model_path, map_location="cpu")
    probs = predict_proba(model, data.test.windows, batch_size, "cpu")
    return evaluate_predictions(probs, data.test.labels, data.test.record_ids, data.class_keys).to_dict()
