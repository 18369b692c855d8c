"""Evaluation actors (``cpu_processing``): ROC, error analysis, architecture comparison, robustness.

Each reads what training saved (the experiment's test predictions, or its model and its
dataset's test split), records an ``Analysis`` with a JSON-safe result and PNGs under
``artifact_root/analyses/<id>``, and sends ``evaluation.completed``. Bad input (an unknown
or unfinished experiment, no saved predictions or model) fails at once and is never
retried; a repeated message for a completed analysis returns the recorded one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from actors.notifications import outbox_event, relay_now
from actors.platform.artifact_files import publish
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.references import ExperimentId, RecordId
from actors.record_files import dataset_file, experiment_file
from actors.store.analyses import claim_analysis, complete_analysis, fail_analysis, failure_recorded
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from actors.store.experiments import get_experiment
from config.settings import get_settings
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.progress import check_stop

__all__ = ["compare_architectures", "error_analysis", "robustness_report", "roc_analysis"]

Compute = Callable[[Database, Path], tuple[dict[str, Any], dict[str, str], dict[str, float]]]


class ExperimentAnalysis(Payload):
    """An analysis of one experiment (``analysis_id`` defaults to one from the message id)."""

    experiment_id: ExperimentId
    analysis_id: RecordId | None = None


class ErrorAnalysis(ExperimentAnalysis):
    """Payload of ``error_analysis``: how much of each list to keep, and the condition bins."""

    top_pairs: int = Field(10, ge=1, le=100)
    max_windows: int = Field(50, ge=1, le=1_000)
    condition_bins: int = Field(4, ge=1, le=20)


class CompareArchitectures(Payload):
    """Payload of ``compare_architectures``: the experiments, and how latency is sampled."""

    experiment_ids: list[ExperimentId] = Field(min_length=1, max_length=20)
    analysis_id: RecordId | None = None
    latency_windows: int = Field(8, ge=1, le=64)
    repeats: int = Field(3, ge=1, le=20)

    @field_validator("experiment_ids")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an experiment is listed twice")
        return value


class RobustnessReport(ExperimentAnalysis):
    """Payload of ``robustness_report``: SNR levels in dB, noise seed, optional window cap."""

    snr_db: list[Annotated[float, Field(ge=-20, le=80)]] = Field(default_factory=lambda: [20.0, 10.0, 5.0],
                                                                 min_length=1, max_length=10)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    max_windows: int | None = Field(None, ge=1)


def _experiment(database: Database, experiment_id: str, *, needs: str) -> dict[str, Any]:
    """A completed experiment whose ``needs`` file (``predictions_path`` or ``model_path``)
    exists, that field naming the file on this host."""
    experiment = get_experiment(database, experiment_id)
    if experiment["status"] != "completed":
        raise InvalidInput(f"experiment {experiment_id!r} is {experiment['status']}, not completed: nothing to evaluate")
    if not experiment[needs]:
        what = "predictions" if needs == "predictions_path" else "model"
        raise InvalidInput(f"experiment {experiment_id!r} has no saved {what}")
    return {**experiment, needs: str(experiment_file(experiment, needs))}


def _dataset_file(database: Database, experiment: dict[str, Any]) -> str:
    return str(dataset_file(get_dataset(database, experiment["dataset_id"])))


def _class_keys(path: str, num_classes: int | None = None) -> list[str]:
    """The dataset's class keys, checked against the number of classes predicted."""
    from pipeline.datasets.hdf5 import read_geometry

    keys = list(read_geometry(path).class_keys)
    if num_classes is not None and len(keys) != num_classes:
        raise InvalidInput(f"the predictions give {num_classes} classes, the dataset has {len(keys)}")
    return keys


def _predictions(experiment: dict[str, Any]) -> dict[str, Any]:
    """The saved test predictions (probabilities, labels, record ids), never unpickled."""
    import numpy as np

    path = experiment["predictions_path"]
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in ("probabilities", "labels", "record_ids")}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetFileError(f"the predictions of experiment {experiment['experiment_id']!r} are unreadable: {exc}") from None


def _predictor(database: Database, experiment: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The experiment's model, its dataset file and the dataset's class keys."""
    from pipeline.datasets.hdf5 import read_geometry
    from pipeline.evaluation.predictors import load_predictor

    path = _dataset_file(database, experiment)
    geometry = read_geometry(path)
    keys = list(geometry.class_keys)
    predictor = load_predictor(experiment["model_key"], experiment["model_path"], len(keys),
                               sha256=experiment["model_sha256"], fs=geometry.sampling_rate)
    return predictor, path, keys


def _event(job: JobContext, analysis_id: str, experiment_ids: list[str], metrics: dict[str, float]) -> dict:
    """The ``evaluation.completed`` outbox row, one per analysis."""
    payload = {"job_id": job.message_id, "evaluation_id": analysis_id, "model_id": ",".join(experiment_ids)[:128],
               "metrics": {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}}
    return outbox_event("evaluation.completed", payload, event_id=f"evaluation.completed:{analysis_id}")


def _run(payload: Payload, job: JobContext, kind: str, experiment_ids: list[str], compute: Compute) -> dict:
    """Claim the analysis, compute it, record it, notify; a completed one is returned as is."""
    from pipeline.training.metrics import json_safe

    settings = get_settings()
    database = get_database(settings.database_url)
    analysis_id = getattr(payload, "analysis_id", None) or f"an-{job.message_id}"
    params = payload.model_dump(mode="json", exclude={"analysis_id"})
    claim = claim_analysis(database, analysis_id, job.message_id, kind=kind, experiment_ids=experiment_ids, params=params)
    if claim.done:
        return claim.summary
    with failure_recorded(fail_analysis, database, analysis_id, job.message_id):
        job.progress(0.0, f"{kind} analysis")
        result, plots, metrics = compute(database, settings.artifact_root / "analyses" / analysis_id)
        # The event commits with the analysis (the outbox): announced once it is recorded, never lost.
        event = _event(job, analysis_id, experiment_ids, metrics)
        summary = complete_analysis(database, analysis_id, job.message_id, result=json_safe(result),
                                    plot_paths={name: publish(path) for name, path in plots.items()},
                                    events=[event])
    relay_now([event["event_id"]])
    return summary


@job_actor(schema=ExperimentAnalysis)
def roc_analysis(payload: ExperimentAnalysis, job: JobContext) -> dict:
    """One-vs-rest ROC per class with micro/macro averages and AUCs, from the saved test probabilities."""
    from pipeline.evaluation.plots import plot_roc
    from pipeline.evaluation.roc import roc_analysis as roc

    def compute(database: Database, folder: Path):  # type: ignore[no-untyped-def]
        experiment = _experiment(database, payload.experiment_id, needs="predictions_path")
        saved = _predictions(experiment)
        keys = _class_keys(_dataset_file(database, experiment), saved["probabilities"].shape[1])
        result = roc(saved["probabilities"], saved["labels"], keys)
        plot = plot_roc(result, folder / "roc.png")
        return result, {"roc": str(plot)}, {"micro_auc": result["micro_auc"], "macro_auc": result["macro_auc"]}

    return _run(payload, job, "roc", [payload.experiment_id], compute)


@job_actor(schema=ErrorAnalysis)
def error_analysis(payload: ErrorAnalysis, job: JobContext) -> dict:
    """Confusion, confused pairs, confident mistakes, errors by severity and operating condition."""
    from pipeline.evaluation.errors import error_analysis as analyse
    from pipeline.evaluation.errors import read_record_metadata
    from pipeline.evaluation.plots import plot_confusion

    def compute(database: Database, folder: Path):  # type: ignore[no-untyped-def]
        experiment = _experiment(database, payload.experiment_id, needs="predictions_path")
        saved = _predictions(experiment)
        path = _dataset_file(database, experiment)
        result = analyse(saved["probabilities"], saved["labels"], saved["record_ids"],
                         _class_keys(path, saved["probabilities"].shape[1]), read_record_metadata(path, "test"),
                         top_pairs=payload.top_pairs, max_windows=payload.max_windows,
                         condition_bins=payload.condition_bins)
        plot = plot_confusion(result, folder / "confusion.png")
        return result, {"confusion": str(plot)}, {"accuracy": result["accuracy"],
                                                  "misclassified": float(result["misclassified"]["total"])}

    return _run(payload, job, "errors", [payload.experiment_id], compute)


@job_actor(schema=CompareArchitectures)
def compare_architectures(payload: CompareArchitectures, job: JobContext) -> dict:
    """Accuracy, macro F1, parameters, FLOPs, latency, size and training time; Pareto front; PNG."""
    from pipeline.evaluation.compare import compare_models, profile_model
    from pipeline.evaluation.plots import plot_comparison
    from pipeline.evaluation.predictors import read_test_windows

    def compute(database: Database, folder: Path):  # type: ignore[no-untyped-def]
        experiments = [_experiment(database, i, needs="model_path") for i in payload.experiment_ids]
        profiles = []
        for index, experiment in enumerate(experiments):
            check_stop(job.should_stop)
            predictor, path, _ = _predictor(database, experiment)
            windows, _, _ = read_test_windows(path, payload.latency_windows)
            profiles.append(profile_model(
                experiment["experiment_id"], predictor, windows, metrics=experiment["metrics"],
                model_size_bytes=Path(experiment["model_path"]).stat().st_size,
                training_time_s=experiment["duration_s"], repeats=payload.repeats))
            job.progress((index + 1) / len(experiments), f"profiled {experiment['experiment_id']}")
        result = compare_models(profiles)
        plot = plot_comparison(result, folder / "comparison.png")
        best = max((p.accuracy or 0.0) for p in profiles)
        return result, {"comparison": str(plot)}, {"models": float(len(profiles)), "best_accuracy": best}

    return _run(payload, job, "comparison", list(payload.experiment_ids), compute)


@job_actor(schema=RobustnessReport)
def robustness_report(payload: RobustnessReport, job: JobContext) -> dict:
    """Accuracy of the experiment's model on its test split under white noise at each SNR, by class."""
    from pipeline.evaluation.plots import plot_robustness
    from pipeline.evaluation.predictors import test_window_groups
    from pipeline.evaluation.robustness import robustness_in_groups

    def compute(database: Database, folder: Path):  # type: ignore[no-untyped-def]
        experiment = _experiment(database, payload.experiment_id, needs="model_path")
        predictor, path, keys = _predictor(database, experiment)
        # A group of records at a time within the training memory budget: a test split larger
        # than memory is never read whole. Noise changes the signal, not the shaft: every
        # level keeps the recorded speeds.
        total, groups = test_window_groups(path, payload.max_windows,
                                           (get_settings().training_memory_mb or 1 << 40) * 2**20)
        result = robustness_in_groups(predictor.predict_proba, groups, keys, payload.snr_db, payload.seed,
                                      on_progress=job.progress, should_stop=job.should_stop, total=total)
        plot = plot_robustness(result, folder / "robustness.png")
        metrics = {"clean_accuracy": result["clean"]["accuracy"],
                   **{f"accuracy_{level['snr_db']:g}db": level["accuracy"] for level in result["levels"]}}
        return result, {"robustness": str(plot)}, metrics

    return _run(payload, job, "robustness", [payload.experiment_id], compute)
