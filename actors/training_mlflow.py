"""A ``train_model`` job as an MLflow run (when ``PFD_MLFLOW_TRACKING_URI`` is set).

Params (model key and arguments, training config, dataset id and config hash), one metric
step per epoch, test metrics, tags (job, root, queue, host, device) and artifacts (best
checkpoint, metrics, predictions, confusion and ROC figures). Everything goes through the
process's background writer, so the training loop never waits on MLflow; while MLflow is
unreachable each progress report says so in the job's status text.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import structlog

from actors.platform.context import JobContext
from actors.platform.mlflow_runs import TrackedRun, flat_params
from actors.platform.mlflow_writer import mlflow_writer
from actors.store.db import Database
from actors.store.experiments import experiment_history
from actors.store.mlflow_runs import dataset_config_hash
from config.settings import Settings
from pipeline.training import TrainingResult
from pipeline.training.metrics import EpochRecord

__all__ = ["TrainingTracker", "track_training"]

log = structlog.get_logger("pfd.training")

_EPOCH_METRICS = {"train_loss": "train_loss", "val_loss": "val_loss", "train_acc": "train_acc",
                  "val_acc": "val_acc", "lr": "lr", "duration_s": "epoch_time_s",
                  "data_wait_fraction": "data_wait_fraction"}
_TEST_METRICS = ("window_accuracy", "record_accuracy", "precision_macro", "recall_macro", "f1_macro")


class TrainingTracker:
    """The MLflow side of one ``train_model`` job; each call queues its work and returns."""

    def __init__(self, run: TrackedRun, job: JobContext, flush_wait_s: float) -> None:
        self.run, self.job, self._flush_wait_s = run, job, flush_wait_s

    def progress(self, fraction: float, status: str = "", **metrics: Any) -> None:
        """``job.progress``, with MLflow's gap added to the status text while there is one."""
        gap = self.run.writer.gap()
        self.job.progress(fraction, f"{status} ({gap.text()})" if gap and status else status, **metrics)

    def epoch(self, record: EpochRecord | dict[str, Any]) -> None:
        """Queue one epoch's metrics (an ``EpochRecord`` or a history row) at step = epoch."""
        values = record.to_dict() if isinstance(record, EpochRecord) else record
        self.run.epoch(int(values["epoch"]), {name: values.get(key) for key, name in _EPOCH_METRICS.items()})

    def completed(self, result: TrainingResult, directory: Path, metrics_path: Path) -> None:
        """Queue test metrics, artifacts and the run's end; wait a bounded time for them to be written."""
        test = result.test
        self.run.metrics({f"test_{name}": test.get(name) for name in _TEST_METRICS}
                         | {"best_val_accuracy": result.best_val_accuracy, "epochs_run": result.epochs_run,
                            "parameter_count": result.parameter_count, "duration_s": result.duration_s})
        self.run.tags({"device": result.device, "best_epoch": result.best_epoch})
        for path in (result.model_path, metrics_path, result.predictions_path):
            self.run.artifact(path, "model" if path == result.model_path else None)
        try:
            from pipeline.evaluation.run_figures import training_figures

            for figure in training_figures(test, result.predictions_path, result.class_keys, directory):
                self.run.artifact(figure, "figures")
        except (ValueError, OSError) as exc:  # a figure is a nicety: the run is complete without it
            log.warning("mlflow.figures_skipped", error=f"{type(exc).__name__}: {exc}")
        self.run.end("FINISHED")
        if not self.run.writer.drain(self._flush_wait_s):
            gap = self.run.writer.gap()
            log.warning("mlflow.run_pending", run_id=self.run.run_id, waiting=gap.waiting if gap else None,
                        error=gap.error if gap else None)

    def failed(self, *, final: bool, cancelled: bool) -> None:
        """Mark the run failed (or killed) when no retry follows; a retry continues it."""
        if final:
            self.run.end("KILLED" if cancelled else "FAILED")


def track_training(settings: Settings, database: Database, job: JobContext, experiment_id: str,
                   spec: dict[str, Any]) -> TrainingTracker | None:
    """Start (or continue) the experiment's MLflow run; ``None`` when MLflow is not configured."""
    writer = mlflow_writer(settings)
    if writer is None:
        return None
    run = TrackedRun(writer, database, experiment=settings.mlflow_experiment, kind="experiment",
                     record_id=experiment_id, name=spec["name"] or experiment_id, tags={
                         "pfd.experiment_id": experiment_id, "pfd.job_id": job.message_id,
                         "pfd.root_id": job.root_id or job.message_id, "pfd.queue": job.queue,
                         "pfd.host": socket.gethostname(), "pfd.attempt": job.attempt,
                         "pfd.model_key": spec["model_key"], "pfd.campaign_id": spec["campaign_id"] or ""})
    run.params({"model_key": spec["model_key"], "dataset_id": spec["dataset_id"],
                "dataset_config_hash": dataset_config_hash(database, spec["dataset_id"]) or "",
                **flat_params("model", spec["model_args"]), **flat_params("training", spec["training_config"])})
    tracker = TrainingTracker(run, job, settings.mlflow_flush_wait_s)
    # A resumed run: the epochs a killed worker recorded may not have reached MLflow before it
    # died. Each goes once (the run skips steps the server holds).
    for row in experiment_history(database, experiment_id):
        tracker.epoch(row)
    return tracker
