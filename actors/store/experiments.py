"""Experiment records and their per-epoch history: claimed by one job, completed once.

An experiment is one training run of one model on one dataset. Its history has one row per
epoch, keyed by ``(experiment_id, epoch)`` and written by upsert, so a resumed run that
reports an epoch again never duplicates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.store.db import Database
from actors.store.domain import row_or_missing
from actors.store.models import Base, utcnow
from actors.store.outbox import stage_events

__all__ = [
    "EXPERIMENT_STATES",
    "SPEC_FIELDS",
    "EpochHistory",
    "Experiment",
    "ExperimentClaim",
    "claim_experiment",
    "complete_experiment",
    "create_experiment",
    "experiment_history",
    "experiment_summary",
    "fail_experiment",
    "find_experiment",
    "get_experiment",
    "record_epoch",
]

EXPERIMENT_STATES = ("pending", "running", "completed", "failed", "cancelled")
# What defines an experiment: the same id with other values here is another experiment.
SPEC_FIELDS = ("dataset_id", "model_key", "model_args", "training_config", "name", "campaign_id")
_EPOCH_FIELDS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "duration_s", "data_wait_fraction", "is_best")


class Experiment(Base):
    """One training run: its spec, state, best epoch, test metrics and artifact paths."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    model_key: Mapped[str] = mapped_column(String(40))
    model_args: Mapped[dict[str, Any]]
    training_config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    epochs_run: Mapped[int] = mapped_column(Integer, default=0)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None]
    model_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_dir: Mapped[str | None] = mapped_column(Text)
    metrics_path: Mapped[str | None] = mapped_column(Text)
    predictions_path: Mapped[str | None] = mapped_column(Text)
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    parameter_count: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    campaign_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EpochHistory(Base):
    """One finished epoch of an experiment (exactly one row per epoch)."""

    __tablename__ = "epoch_history"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch", name="uq_epoch_history_experiment_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_acc: Mapped[float | None] = mapped_column(Float)
    val_acc: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)
    data_wait_fraction: Mapped[float | None] = mapped_column(Float)
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class ExperimentClaim:
    """The outcome of claiming an experiment: done (with its summary) or held, with its spec."""

    experiment_id: str
    done: bool
    summary: dict[str, Any] | None = None
    spec: dict[str, Any] = field(default_factory=dict)


def experiment_summary(row: Experiment) -> dict[str, Any]:
    """Return the compact JSON-safe summary a job reports for an experiment."""
    test = row.metrics or {}
    return {
        "experiment_id": row.id, "name": row.name, "status": row.status, "dataset_id": row.dataset_id,
        "model_key": row.model_key, "campaign_id": row.campaign_id, "job_id": row.job_id,
        "epochs_run": row.epochs_run, "best_epoch": row.best_epoch, "best_val_accuracy": row.best_val_accuracy,
        "test_accuracy": test.get("window_accuracy"), "test_record_accuracy": test.get("record_accuracy"),
        "test_f1_macro": test.get("f1_macro"), "model_path": row.model_path, "model_sha256": row.model_sha256,
        "checkpoint_dir": row.checkpoint_dir, "metrics_path": row.metrics_path,
        "predictions_path": row.predictions_path, "parameter_count": row.parameter_count,
        "duration_s": row.duration_s, "error": row.error,
    }


def _spec(row: Experiment) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SPEC_FIELDS}


def _conflict_on_integrity(exc: StoreError, experiment_id: str) -> None:
    if isinstance(exc.__cause__, IntegrityError):
        raise RecordConflict(f"experiment {experiment_id!r} was created by another job at the same time") from None


def create_experiment(database: Database, experiment_id: str, **spec: Any) -> dict[str, Any]:
    """Create a ``pending`` experiment from its spec (``SPEC_FIELDS``); return its summary.

    Raises:
        RecordConflict: an experiment with this id already exists.
    """
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise TypeError(f"unknown experiment field(s): {', '.join(unknown)}")
    try:
        with database.session() as session:
            if session.get(Experiment, experiment_id) is not None:
                raise RecordConflict(f"experiment {experiment_id!r} already exists")
            row = Experiment(id=experiment_id, status="pending", **spec)
            session.add(row)
            session.flush()
            return experiment_summary(row)
    except StoreError as exc:
        _conflict_on_integrity(exc, experiment_id)
        raise


def find_experiment(database: Database, experiment_id: str) -> dict[str, Any] | None:
    """Return an experiment's summary plus its spec, or ``None`` when there is none."""
    with database.session() as session:
        row = session.get(Experiment, experiment_id)
        return None if row is None else {**experiment_summary(row), **_spec(row)}


def get_experiment(database: Database, experiment_id: str) -> dict[str, Any]:
    """Return an experiment's summary, spec and test metrics; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, Experiment, experiment_id, "experiment")
        return {**experiment_summary(row), **_spec(row), "metrics": row.metrics,
                "created_at": row.created_at, "updated_at": row.updated_at}


def claim_experiment(
    database: Database, experiment_id: str, job_id: str, *, spec: dict[str, Any] | None, checkpoint_dir: str,
) -> ExperimentClaim:
    """Claim ``experiment_id`` for ``job_id``, creating it from ``spec`` if it does not exist.

    A completed experiment is not redone (``done``, with its summary). The same job may claim
    again (a redelivered message); another job may not while it runs.

    Raises:
        RecordNotFound: no such experiment and no ``spec`` to create it from.
        RecordConflict: another job is running it, or created it at the same moment.
    """
    try:
        with database.session() as session:
            row = session.get(Experiment, experiment_id, with_for_update=True)
            if row is None:
                if spec is None:
                    raise RecordNotFound(f"no experiment with id {experiment_id!r}")
                session.add(Experiment(id=experiment_id, status="running", job_id=job_id,
                                       checkpoint_dir=checkpoint_dir, **spec))
                return ExperimentClaim(experiment_id, done=False, spec=dict(spec))
            if row.status == "completed":
                return ExperimentClaim(experiment_id, done=True, summary=experiment_summary(row), spec=_spec(row))
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(f"experiment {experiment_id!r} is being trained by job {row.job_id}")
            row.status, row.job_id, row.error, row.checkpoint_dir = "running", job_id, None, checkpoint_dir
            return ExperimentClaim(experiment_id, done=False, spec=_spec(row))
    except StoreError as exc:
        _conflict_on_integrity(exc, experiment_id)
        raise


def _upsert_statement(database: Database, values: dict[str, Any]):  # type: ignore[no-untyped-def]
    insert = pg_insert if database.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(EpochHistory).values(values)
    return statement.on_conflict_do_update(
        index_elements=[EpochHistory.experiment_id, EpochHistory.epoch],
        set_={name: statement.excluded[name] for name in (*_EPOCH_FIELDS, "recorded_at")},
    )


def record_epoch(database: Database, experiment_id: str, record: dict[str, Any]) -> None:
    """Upsert the history row of ``record['epoch']`` and advance the experiment's counters."""
    epoch = int(record["epoch"])
    values: dict[str, Any] = {"experiment_id": experiment_id, "epoch": epoch, "recorded_at": utcnow(),
              **{name: record.get(name) for name in _EPOCH_FIELDS}}
    values["is_best"] = bool(values["is_best"])
    with database.session() as session:
        # Lock the experiment first: the insert's foreign-key check would otherwise take a
        # share lock that two concurrent runs of one experiment could both try to upgrade.
        row = session.get(Experiment, experiment_id, with_for_update=True)
        session.execute(_upsert_statement(database, values))
        if row is not None and row.status != "completed":
            row.epochs_run = max(row.epochs_run or 0, epoch)
            if values["is_best"]:
                row.best_epoch, row.best_val_accuracy = epoch, values["val_acc"]


def complete_experiment(database: Database, experiment_id: str, job_id: str, *,
                        events: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] | None = None,
                        **fields: Any) -> dict[str, Any]:
    """Mark the experiment completed with its results and paths; return its summary.

    ``events(summary)`` go to the outbox in the same transaction (only when this call completes it).

    Raises:
        RecordConflict: the experiment is no longer claimed by ``job_id``.
    """
    with database.session() as session:
        row = session.get(Experiment, experiment_id, with_for_update=True)
        if row is None or row.job_id != job_id:
            raise RecordConflict(f"experiment {experiment_id!r} is no longer claimed by job {job_id}")
        if row.status == "completed":
            return experiment_summary(row)
        for name, value in fields.items():
            setattr(row, name, value)
        row.status, row.error = "completed", None
        summary = experiment_summary(row)
        if events is not None:
            stage_events(session, events(summary))
        return summary


def fail_experiment(
    database: Database, experiment_id: str, job_id: str, error: str, *, status: str = "failed",
    events: Iterable[dict[str, Any]] = (),
) -> str:
    """Record why ``job_id``'s run of the experiment ended (``failed`` or ``cancelled``).

    Only a run this job holds is marked (with ``events`` added to the outbox in the same
    transaction); a completed experiment or another job's run is kept.
    Returns ``"recorded"``, ``"kept"`` (not this job's to mark) or ``"absent"``.
    """
    if status not in ("failed", "cancelled"):
        raise ValueError(f"an experiment ends failed or cancelled, not {status!r}")
    with database.session() as session:
        row = session.get(Experiment, experiment_id, with_for_update=True)
        if row is None:
            return "absent"
        if row.job_id != job_id or row.status != "running":
            return "kept"
        row.status, row.error = status, error[:4000]
        stage_events(session, events)
        return "recorded"


def experiment_history(database: Database, experiment_id: str) -> list[dict[str, Any]]:
    """Return the experiment's epoch rows, oldest first."""
    with database.session() as session:
        rows = session.scalars(
            select(EpochHistory).where(EpochHistory.experiment_id == experiment_id).order_by(EpochHistory.epoch)
        ).all()
        return [{"epoch": row.epoch, **{name: getattr(row, name) for name in _EPOCH_FIELDS}} for row in rows]
