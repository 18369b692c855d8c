"""Training actor (``gpu_training``): train one experiment's model on its dataset and record it.

``train_model`` takes an existing experiment's id, or the fields to create one. Bad input
(model key or arguments, training options, dataset) fails before anything is claimed and is
never retried. The run's checkpoints live in ``artifact_root/experiments/<id>``; a message
redelivered after its worker died resumes from ``last.pt`` there, and a message for a
completed experiment returns the recorded result without training again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any

import structlog
from dramatiq.middleware import TimeLimitExceeded
from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from actors.notifications import outbox_event, relay_now
from actors.platform.artifact_files import (
    artifact_key,
    artifact_store,
    publish,
    restore,
    store_is_artifact_root,
)
from actors.platform.background_publish import BackgroundPublisher
from actors.platform.base import Payload, job_actor
from actors.platform.catalog import option_row, options_of_dataclass
from actors.platform.context import JobContext
from actors.platform.errors import ActorError, RecordConflict
from actors.platform.references import DatasetId, ExperimentId, RecordId
from actors.record_files import dataset_file
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from actors.store.experiments import (
    claim_experiment,
    complete_experiment,
    fail_experiment,
    find_experiment,
    record_epoch,
)
from actors.store.outbox import record_events
from actors.training_mlflow import TrainingTracker, track_training
from config.settings import get_settings, mask_secrets
from pipeline.artifacts import atomic_path, file_sha256
from pipeline.errors import InvalidInput, StopRequested
from pipeline.models import CLASSICAL_KEYS, MODEL_KEYS, is_deep, validate_model_args
from pipeline.models.arguments import ARGUMENTS, type_name
from pipeline.training import TrainingConfig, TrainingData, TrainingResult, load_training_data
from pipeline.training.config import DEVICES, OPTIMIZERS, SCHEDULERS
from pipeline.training.metrics import EpochRecord

__all__ = ["TrainModel", "experiment_spec", "fit_to_dataset", "load_training_dataset", "published_progress",
           "ready_dataset", "restore_progress", "train_model", "training_option_rows", "training_options"]

log = structlog.get_logger("pfd.training")

METRICS_NAME = "metrics.json"
TRAINING_OPTIONS = tuple(f.name for f in dataclass_fields(TrainingConfig))


class TrainModel(Payload):
    """Payload of ``train_model``: an experiment id, or ``dataset_id`` + ``model_key`` (+ options) to create one.

    ``model_args`` are the model's constructor arguments; ``training`` the optimiser, loader
    and schedule options (``TrainingConfig``, deep models only). Both are checked on send
    against the model's declared arguments, and again by the worker (which also builds the
    model once) before anything is claimed.
    """

    experiment_id: ExperimentId | None = Field(
        None, description="an existing experiment to train; with dataset_id and model_key, the id of the new one")
    dataset_id: DatasetId | None = Field(None, description="the completed dataset a new experiment trains on")
    model_key: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="the model of a new experiment: " + ", ".join(MODEL_KEYS))
    model_args: dict[str, Any] = Field(default_factory=dict, description="the model's constructor arguments")
    training: dict[str, Any] = Field(
        default_factory=dict, description="TrainingConfig options (deep models only): " + ", ".join(TRAINING_OPTIONS))
    name: str = Field("", max_length=200)
    campaign_id: RecordId | None = None

    @field_validator("model_key")
    @classmethod
    def _known_model(cls, key: str | None) -> str | None:
        if key is not None:
            is_deep(key)  # raises InvalidInput naming the valid keys
        return key

    @field_validator("model_args")
    @classmethod
    def _model_accepts(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("model_key"):
            validate_model_args(info.data["model_key"], args, build=False)
        return args

    @field_validator("training")
    @classmethod
    def _training_accepts(cls, training: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("model_key"):
            training_options(info.data["model_key"], training)
        return training

    @model_validator(mode="after")
    def _one_way_to_name_the_experiment(self) -> TrainModel:
        if (self.dataset_id is None) != (self.model_key is None):
            raise ValueError("dataset_id and model_key go together (they create the experiment)")
        if self.dataset_id is None:
            if self.experiment_id is None:
                raise ValueError("give experiment_id, or dataset_id and model_key to create an experiment")
            if self.model_args or self.training or self.name or self.campaign_id:
                raise ValueError("model_args, training, name and campaign_id only go with dataset_id and model_key")
        return self

    @property
    def creates(self) -> bool:
        """True when the payload carries the fields to create the experiment."""
        return self.dataset_id is not None

    def references(self) -> list[tuple[str, str, str]]:
        """The records that must exist: not the experiment this message creates."""
        return [ref for ref in super().references() if not (self.creates and ref[0] == "experiment_id")]

    @classmethod
    def documented_options(cls) -> dict[str, list[dict[str, Any]]]:
        """Training options, and every model's arguments (``<model>.<argument>``)."""
        return {"training": training_option_rows(), "model_args": [
            option_row(f"{key}.{name}", type_name(arg.hint), arg.default, required=arg.required)
            for key, args in ARGUMENTS.items() for name, arg in args.items()]}


def training_option_rows() -> list[dict[str, Any]]:
    """The rows of ``TrainingConfig`` (deep models' training options), for schemas that take them."""
    return options_of_dataclass(TrainingConfig, {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "device": DEVICES})


def training_options(model_key: str, training: dict[str, Any] | None) -> dict[str, Any]:
    """Validate training options for a model; return the full ``TrainingConfig`` (``{}`` for a classical model).

    Raises:
        InvalidInput: an unknown option, a wrong type or range, or options for a classical model.
    """
    if model_key in CLASSICAL_KEYS:
        if training:
            raise InvalidInput(f"training options apply to deep models only; {model_key!r} takes none, got {sorted(training)}")
        return {}
    return TrainingConfig.from_dict(training).to_dict()


def experiment_spec(
    dataset_id: str, model_key: str, model_args: dict[str, Any] | None, training: dict[str, Any] | None,
    *, name: str = "", campaign_id: str | None = None, dataset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate a model and its training options; return the spec with every default filled in.

    With the ``dataset`` record, a deep model's classes and input channels not given are the
    dataset's (a model of the generator's 11 classes would not fit a user's 4).

    Raises:
        InvalidInput: unknown model key or argument, a wrong type or range, or training
            options for a classical model.
    """
    if dataset is not None:
        model_args = fit_to_dataset(dataset, model_key, model_args)
    args = validate_model_args(model_key, model_args)
    config = training_options(model_key, training)
    return {"dataset_id": dataset_id, "model_key": model_key, "model_args": args,
            "training_config": config, "name": name, "campaign_id": campaign_id}


def _same_experiment(existing: dict[str, Any], spec: dict[str, Any]) -> bool:
    if (existing["dataset_id"], existing["model_key"]) != (spec["dataset_id"], spec["model_key"]):
        return False
    try:
        recorded = experiment_spec(existing["dataset_id"], existing["model_key"], existing["model_args"],
                                   existing["training_config"] or None)
    except InvalidInput:
        return False
    return (recorded["model_args"], recorded["training_config"]) == (spec["model_args"], spec["training_config"])


def _payload_spec(payload: TrainModel, experiment_id: str, database: Database) -> dict[str, Any] | None:
    """Validate what the payload asks for (``None``: train the experiment as recorded)."""
    if not payload.creates:
        return None
    dataset = ready_dataset(database, payload.dataset_id)  # type: ignore[arg-type]
    spec = experiment_spec(payload.dataset_id, payload.model_key, payload.model_args, payload.training,  # type: ignore[arg-type]
                           name=payload.name, campaign_id=payload.campaign_id, dataset=dataset)
    existing = find_experiment(database, experiment_id)
    if existing is not None and not _same_experiment(existing, spec):
        raise InvalidInput(f"experiment {experiment_id!r} already exists with another dataset, model or training config")
    return spec


def fit_to_dataset(dataset: dict[str, Any], model_key: str, model_args: dict[str, Any] | None) -> dict[str, Any]:
    """``model_args`` with a deep model's ``num_classes`` and ``in_channels`` defaulting to the dataset's."""
    from pipeline.datasets.hdf5 import read_geometry
    from pipeline.models.registry import args_for_data

    geometry = read_geometry(dataset_file(dataset))
    return args_for_data(model_key, model_args, geometry.num_classes, geometry.in_channels)


def ready_dataset(database: Database, dataset_id: str) -> dict[str, Any]:
    """Return a completed dataset's record; raises ``RecordNotFound`` or ``InvalidInput``."""
    dataset = get_dataset(database, dataset_id)
    if dataset["status"] != "completed" or not dataset["path"]:
        raise InvalidInput(f"dataset {dataset_id!r} is {dataset['status']}, not completed: it cannot be trained on")
    return dataset


def load_training_dataset(dataset: dict[str, Any], memory_mb: int = 0) -> TrainingData:
    """Read the dataset's splits after checking its file against the recorded checksum: into
    memory when they fit ``memory_mb`` (0: always), else a group of records at a time."""
    path = dataset_file(dataset, checked=True)
    data = load_training_data(path, memory_budget_bytes=memory_mb * 2**20 if memory_mb else None)
    present = sorted({int(label) for label in data.train.labels.tolist()})
    if len(present) < 2:
        keys = ", ".join(data.class_keys[i] for i in present) or "none"
        raise InvalidInput(f"dataset {dataset['dataset_id']!r} has one class in its train split ({keys}); training needs two or more")
    return data


def _train(spec: dict[str, Any], data: TrainingData, directory: Path, job: JobContext,
           database: Database, experiment_id: str, tracker: TrainingTracker | None = None) -> TrainingResult:
    progress = tracker.progress if tracker else job.progress
    if spec["model_key"] in CLASSICAL_KEYS:
        from pipeline.training.classical import train_classical

        return train_classical(spec["model_key"], spec["model_args"], data, None, directory,
                               on_progress=progress, should_stop=job.should_stop)
    from pipeline.training.loop import train_deep

    restore_progress(directory)
    with published_progress(directory) as publish_epoch:
        def on_epoch(record: EpochRecord) -> None:
            record_epoch(database, experiment_id, record.to_dict())
            publish_epoch()
            if tracker:
                tracker.epoch(record)

        return train_deep(
            spec["model_key"], spec["model_args"], spec["training_config"], data, directory,
            on_progress=progress, should_stop=job.should_stop, on_epoch=on_epoch,
        )


def restore_progress(directory: Path) -> None:
    """Put a deep run's checkpoints that another host published in ``directory``, so a job
    redelivered here resumes from that host's last epoch instead of the first."""
    from pipeline.training.loop import BEST_NAME, LAST_NAME

    for name in (BEST_NAME, LAST_NAME):
        restore(directory / name)


@contextmanager
def published_progress(directory: Path) -> Iterator[Callable[[], None]]:
    """Yield what to call after each epoch of a deep run in ``directory``: where the store is
    not the artifact root, it publishes the run's checkpoints as they are (``best.pt`` first,
    since ``last.pt``'s state counts on the best it names) from a thread of its own, so the
    next epoch starts at once. A block that ends normally waits for the last upload (and
    raises a failed one) before it is left, so nothing published after it can be overwritten
    by an older epoch's upload."""
    from pipeline.training.loop import BEST_NAME, LAST_NAME

    if store_is_artifact_root():
        yield lambda: None
        return
    files = [(directory / name, artifact_key(directory / name)) for name in (BEST_NAME, LAST_NAME)]
    with BackgroundPublisher(artifact_store(), files) as publisher:
        yield publisher.submit
        publisher.drain()


def _completed_event(summary: dict[str, Any]) -> dict[str, Any]:
    names = ("test_accuracy", "test_record_accuracy", "test_f1_macro", "best_val_accuracy")
    return {"job_id": summary["job_id"], "experiment_id": summary["experiment_id"], "model": summary["model_key"],
            "metrics": {name: summary[name] for name in names if summary[name] is not None},
            "duration_s": summary["duration_s"]}


def _will_retry(job: JobContext, exc: BaseException) -> bool:
    retry_when = train_model.options.get("retry_when")
    return bool(retry_when and retry_when(job.attempt - 1, exc))


def _record_failure(database: Database, experiment_id: str, job: JobContext, exc: BaseException, model: str) -> None:
    """Mark this job's run failed (or cancelled) with the reason and send ``training.failed``."""
    if isinstance(exc, RecordConflict) or _will_retry(job, exc):
        return  # another job owns the experiment, or a retry follows
    cancelled = isinstance(exc, StopRequested) and job.cancel_seen
    if isinstance(exc, (StopRequested, TimeLimitExceeded)):
        reason = "cancelled" if cancelled else "JobTimedOut: the job passed its time limit"
    else:
        reason = mask_secrets(f"{type(exc).__name__}: {exc}")
    event = outbox_event("training.failed", {"job_id": job.message_id, "experiment_id": experiment_id,
                                             "model": model, "error": reason[:2000]},
                         event_id=f"training.failed:{job.message_id}")
    try:
        # The event commits with the failure (the outbox); with no experiment row, it is the only record.
        outcome = fail_experiment(database, experiment_id, job.message_id, reason,
                                  status="cancelled" if cancelled else "failed", events=[event])
        if outcome == "absent":
            record_events(database, [event])
    except ActorError as store_exc:  # the original error must still propagate
        log.error("training.record_failure_failed", error=mask_secrets(str(store_exc)))
        return
    if outcome != "kept":
        relay_now([event["event_id"]])


@job_actor(schema=TrainModel)
def train_model(payload: TrainModel, job: JobContext) -> dict:
    """Train the experiment's model (deep or classical), save it and its test metrics, record it."""
    settings = get_settings()
    database = get_database(settings.database_url)
    experiment_id = payload.experiment_id or f"exp-{job.message_id}"
    model = payload.model_key or ""
    tracker: TrainingTracker | None = None
    try:
        spec = _payload_spec(payload, experiment_id, database)
        directory = settings.artifact_root / "experiments" / experiment_id
        claim = claim_experiment(database, experiment_id, job.message_id, spec=spec, checkpoint_dir=str(directory))
        if claim.done:
            return claim.summary  # type: ignore[return-value]
        if spec is None:  # an experiment the caller created is checked once this job holds it
            recorded, model = claim.spec, claim.spec["model_key"]
            spec = experiment_spec(recorded["dataset_id"], model, recorded["model_args"],
                                   recorded["training_config"] or None,
                                   name=recorded["name"], campaign_id=recorded["campaign_id"],
                                   dataset=ready_dataset(database, recorded["dataset_id"]))
        tracker = track_training(settings, database, job, experiment_id, spec)
        job.progress(0.0, "loading dataset")
        data = load_training_dataset(ready_dataset(database, spec["dataset_id"]), settings.training_memory_mb)
        result = _train(spec, data, directory, job, database, experiment_id, tracker)
        with atomic_path(directory / METRICS_NAME) as tmp:
            tmp.write_text(json.dumps({"experiment_id": experiment_id, **result.to_dict()}, indent=2, sort_keys=True))
        model_sha256 = result.model_sha256 or file_sha256(result.model_path)
        # Published before the record names them: a reader on any host finds them whole.
        summary = complete_experiment(
            database, experiment_id, job.message_id,
            model_args=result.model_args, training_config=result.config, epochs_run=result.epochs_run,
            best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy, metrics=result.test,
            model_path=publish(result.model_path, model_sha256), model_sha256=model_sha256,
            metrics_path=publish(directory / METRICS_NAME), predictions_path=publish(result.predictions_path),
            parameter_count=result.parameter_count, duration_s=result.duration_s,
            events=lambda done: [outbox_event("training.completed", _completed_event(done),
                                              event_id=f"training.completed:{experiment_id}")],
        )
    except BaseException as exc:
        _record_failure(database, experiment_id, job, exc, model)
        if tracker:
            tracker.failed(final=not _will_retry(job, exc), cancelled=isinstance(exc, StopRequested) and job.cancel_seen)
        raise
    if tracker:
        tracker.completed(result, directory, directory / METRICS_NAME)
    relay_now([f"training.completed:{experiment_id}"])
    return summary
