"""Feature sets and analyses: records claimed by one job, completed once, failed with a reason.

A feature set is the features of one dataset for one set of domains; its id is derived
from both, so a later request for the same features finds it and reuses the file. An
analysis is one evaluation or feature-ranking result (ROC, errors, comparison,
robustness, importance, selection, correlation) with its JSON result and its PNGs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from actors.platform.errors import RecordConflict, StoreError
from actors.store.db import Database
from actors.store.domain import fail_held, row_or_missing
from actors.store.models import Base, utcnow
from actors.store.outbox import stage_events
from config.settings import mask_secrets

__all__ = [
    "Analysis",
    "Claim",
    "FeatureSet",
    "analysis_summary",
    "claim_analysis",
    "claim_feature_set",
    "complete_analysis",
    "complete_feature_set",
    "fail_analysis",
    "fail_feature_set",
    "failure_recorded",
    "feature_set_summary",
    "get_analysis",
    "get_feature_set",
    "update_feature_set",
]


class FeatureSet(Base):
    """The features of one dataset for some domains: an ``.npz`` artifact and its counts."""

    __tablename__ = "feature_sets"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    domains: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    path: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    dataset_checksum: Mapped[str | None] = mapped_column(String(64))
    n_windows: Mapped[int] = mapped_column(Integer, default=0)
    n_features: Mapped[int] = mapped_column(Integer, default=0)
    split_counts: Mapped[dict[str, Any] | None]  # windows (rows) per split, not records
    shards: Mapped[int] = mapped_column(Integer, default=0)
    fanout_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Analysis(Base):
    """One evaluation or feature analysis: its inputs, JSON result, PNGs and state."""

    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    experiment_ids: Mapped[list[Any]]
    feature_set_id: Mapped[str | None] = mapped_column(ForeignKey("feature_sets.id", ondelete="SET NULL"), index=True)
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    result: Mapped[dict[str, Any] | None]
    plot_paths: Mapped[dict[str, Any] | None]
    artifact_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a record: ``done`` (with its summary) or now held by the job."""

    record_id: str
    done: bool
    summary: dict[str, Any] = field(default_factory=dict)


def feature_set_summary(row: FeatureSet) -> dict[str, Any]:
    """Return the JSON-safe summary a job reports for a feature set."""
    return {
        "feature_set_id": row.id, "dataset_id": row.dataset_id, "domains": row.domains, "status": row.status,
        "job_id": row.job_id, "path": row.path, "checksum": row.checksum, "dataset_checksum": row.dataset_checksum,
        "n_windows": row.n_windows, "n_features": row.n_features, "split_counts": row.split_counts,
        "shards": row.shards, "fanout_id": row.fanout_id, "error": row.error,
    }


def analysis_summary(row: Analysis) -> dict[str, Any]:
    """Return the JSON-safe summary (with the result) a job reports for an analysis."""
    return {
        "analysis_id": row.id, "kind": row.kind, "experiment_ids": row.experiment_ids,
        "feature_set_id": row.feature_set_id, "params": row.params, "status": row.status, "job_id": row.job_id,
        "result": row.result, "plot_paths": row.plot_paths or {}, "artifact_path": row.artifact_path,
        "error": row.error,
    }


def _conflict_on_integrity(exc: StoreError, what: str) -> None:
    if isinstance(exc.__cause__, IntegrityError):
        raise RecordConflict(f"{what} was created by another job at the same time") from None


def claim_feature_set(
    database: Database, feature_set_id: str, job_id: str, *, dataset_id: str, domains: list[str],
    dataset_checksum: str | None, redo: bool = False,
) -> Claim:
    """Claim a feature set for ``job_id``, creating it if new; ``summary`` is the held record.

    A completed set of the same dataset file (same checksum) is not redone (``done``)
    unless ``redo``, which the caller asks for when its file is gone or altered. The same
    job may claim again (a redelivered message); another job may not while it runs.

    Raises:
        RecordConflict: another job is extracting it.
    """
    try:
        with database.session() as session:
            row = session.get(FeatureSet, feature_set_id, with_for_update=True)
            if row is None:
                session.add(FeatureSet(id=feature_set_id, dataset_id=dataset_id, domains=list(domains),
                                       status="running", job_id=job_id, dataset_checksum=dataset_checksum))
                return Claim(feature_set_id, done=False)
            if row.status == "completed" and not redo and row.dataset_checksum == dataset_checksum:
                return Claim(feature_set_id, done=True, summary=feature_set_summary(row))
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(f"feature set {feature_set_id!r} is being extracted by job {row.job_id}")
            if row.job_id != job_id or row.status != "running":
                # A new run: forget the last run's fan-out. A redelivered message of the
                # running job keeps it, so that it does not fan out a second time.
                row.fanout_id, row.shards = None, 0
            row.status, row.job_id, row.error, row.dataset_checksum = "running", job_id, None, dataset_checksum
            return Claim(feature_set_id, done=False, summary=feature_set_summary(row))
    except StoreError as exc:
        _conflict_on_integrity(exc, f"feature set {feature_set_id!r}")
        raise


def _held(session: Any, model: type[FeatureSet | Analysis], record_id: str, job_id: str) -> Any:
    row = session.get(model, record_id, with_for_update=True)
    if row is None or row.job_id != job_id:
        raise RecordConflict(f"{model.__tablename__} record {record_id!r} is no longer claimed by job {job_id}")
    return row


def update_feature_set(database: Database, feature_set_id: str, job_id: str, **fields: Any) -> None:
    """Set fields of a feature set this job holds (its fan-out id and shard count)."""
    with database.session() as session:
        row = _held(session, FeatureSet, feature_set_id, job_id)
        for name, value in fields.items():
            setattr(row, name, value)


def complete_feature_set(database: Database, feature_set_id: str, job_id: str, **fields: Any) -> dict[str, Any]:
    """Mark the feature set completed with its file and counts; return its summary.

    Raises:
        RecordConflict: the set is no longer claimed by ``job_id``.
    """
    with database.session() as session:
        row = _held(session, FeatureSet, feature_set_id, job_id)
        if row.status != "completed":
            for name, value in fields.items():
                setattr(row, name, value)
            row.status, row.error = "completed", None
        return feature_set_summary(row)


def fail_feature_set(database: Database, feature_set_id: str, job_id: str, error: str) -> None:
    """Mark the feature set failed with the reason, if ``job_id`` still holds it running."""
    fail_held(database, FeatureSet, feature_set_id, job_id, error)


def get_feature_set(database: Database, feature_set_id: str) -> dict[str, Any]:
    """Return a feature set's summary; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, FeatureSet, feature_set_id, "feature set")
        return feature_set_summary(row)


def claim_analysis(
    database: Database, analysis_id: str, job_id: str, *, kind: str, experiment_ids: list[str],
    params: dict[str, Any], feature_set_id: str | None = None,
) -> Claim:
    """Claim an analysis for ``job_id``, creating it if new; a completed one is ``done``.

    Raises:
        RecordConflict: the id is taken by another kind of analysis or other inputs, or
            another job is running it.
    """
    try:
        with database.session() as session:
            row = session.get(Analysis, analysis_id, with_for_update=True)
            if row is None:
                session.add(Analysis(id=analysis_id, kind=kind, experiment_ids=list(experiment_ids), params=params,
                                     feature_set_id=feature_set_id, status="running", job_id=job_id))
                return Claim(analysis_id, done=False)
            if (row.kind, row.experiment_ids, row.params) != (kind, list(experiment_ids), params):
                raise RecordConflict(f"analysis {analysis_id!r} already exists for other inputs ({row.kind})")
            if row.status == "completed":
                return Claim(analysis_id, done=True, summary=analysis_summary(row))
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(f"analysis {analysis_id!r} is being run by job {row.job_id}")
            row.status, row.job_id, row.error, row.feature_set_id = "running", job_id, None, feature_set_id
            return Claim(analysis_id, done=False)
    except StoreError as exc:
        _conflict_on_integrity(exc, f"analysis {analysis_id!r}")
        raise


def complete_analysis(
    database: Database, analysis_id: str, job_id: str, *, result: dict[str, Any],
    plot_paths: dict[str, str] | None = None, artifact_path: str | None = None, feature_set_id: str | None = None,
    events: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Mark the analysis completed with its result and files (``events`` to the outbox in the same
    transaction); return its summary.

    Raises:
        RecordConflict: the analysis is no longer claimed by ``job_id``.
    """
    with database.session() as session:
        row = _held(session, Analysis, analysis_id, job_id)
        if row.status != "completed":
            row.result, row.plot_paths, row.artifact_path = result, plot_paths or {}, artifact_path
            row.feature_set_id = feature_set_id or row.feature_set_id
            row.status, row.error = "completed", None
            stage_events(session, events)
        return analysis_summary(row)


def fail_analysis(database: Database, analysis_id: str, job_id: str, error: str) -> None:
    """Mark the analysis failed with the reason, if ``job_id`` still holds it running."""
    fail_held(database, Analysis, analysis_id, job_id, error)


def get_analysis(database: Database, analysis_id: str) -> dict[str, Any]:
    """Return an analysis's summary and result; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, Analysis, analysis_id, "analysis")
        return analysis_summary(row)


@contextmanager
def failure_recorded(
    fail: Callable[[Database, str, str, str], None], database: Database, record_id: str, job_id: str,
) -> Iterator[None]:
    """Record why the work inside failed (``fail_analysis`` or ``fail_feature_set``), then re-raise.

    A retried attempt claims the record again, so marking it failed here loses nothing.
    """
    try:
        yield
    except BaseException as exc:
        fail(database, record_id, job_id, mask_secrets(f"{type(exc).__name__}: {exc}"))
        raise
