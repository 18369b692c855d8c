"""Listings for people and services: recent jobs with filters, and every kind of domain record.

Each listing is one indexed query, newest first, with a page size and an offset; a record
kind is listed through the summary function its store module already gives callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from actors.store.analyses import Analysis, FeatureSet, analysis_summary, feature_set_summary
from actors.store.campaigns import Campaign, campaign_view
from actors.store.datasets import dataset_summary
from actors.store.db import Database
from actors.store.deployments import Deployment, deployment_summary
from actors.store.domain import row_or_missing
from actors.store.experiments import Experiment, experiment_summary
from actors.store.explanations import (
    Explanation,
    ExplanationBatch,
    batch_summary,
    explanation_summary,
)
from actors.store.jobs import JobView, view_from_row
from actors.store.models import Base, Dataset, Job

__all__ = ["RECORD_KINDS", "RecordKind", "get_record", "job_counts", "list_jobs", "list_records"]


@dataclass(frozen=True)
class RecordKind:
    """A kind of domain record: its table, how it reads, and the columns a table of them shows."""

    model: type[Base]
    summary: Callable[[Any], dict[str, Any]]
    what: str
    columns: tuple[str, ...]


RECORD_KINDS: dict[str, RecordKind] = {
    "datasets": RecordKind(Dataset, dataset_summary, "dataset",
                           ("dataset_id", "status", "source", "n_records", "created_at")),
    "experiments": RecordKind(Experiment, experiment_summary, "experiment",
                              ("experiment_id", "status", "model_key", "dataset_id", "created_at")),
    "campaigns": RecordKind(Campaign, campaign_view, "campaign",
                            ("campaign_id", "status", "kind", "best_value", "created_at")),
    "deployments": RecordKind(Deployment, deployment_summary, "deployment",
                              ("deployment_id", "status", "stage", "experiment_id", "created_at")),
    "analyses": RecordKind(Analysis, analysis_summary, "analysis",
                           ("analysis_id", "status", "kind", "created_at")),
    "feature-sets": RecordKind(FeatureSet, feature_set_summary, "feature set",
                               ("feature_set_id", "status", "dataset_id", "created_at")),
    "explanations": RecordKind(Explanation, explanation_summary, "explanation",
                               ("explanation_id", "status", "method", "experiment_id", "created_at")),
    "explanation-batches": RecordKind(ExplanationBatch, batch_summary, "explanation batch",
                                      ("batch_id", "status", "experiment_id", "created_at")),
}


def _with_times(kind: RecordKind, row: Any) -> dict[str, Any]:
    # Not every summary carries the row's times; a listing always shows when it was made.
    view = kind.summary(row)
    view.setdefault("created_at", row.created_at)
    view.setdefault("job_id", getattr(row, "job_id", None))
    return view


def list_records(
    database: Database, kind: str, *, status: str | None = None, limit: int = 50, offset: int = 0,
) -> list[dict[str, Any]]:
    """Return records of ``kind`` (a key of ``RECORD_KINDS``), newest first."""
    record_kind = RECORD_KINDS[kind]
    model: Any = record_kind.model
    query = select(model).order_by(model.created_at.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(model.status == status)
    with database.session() as session:
        return [_with_times(record_kind, row) for row in session.scalars(query)]


def get_record(database: Database, kind: str, record_id: str) -> dict[str, Any]:
    """Return one record of ``kind``; raises ``RecordNotFound`` naming the kind and id."""
    record_kind = RECORD_KINDS[kind]
    with database.session() as session:
        return _with_times(record_kind, row_or_missing(session, record_kind.model, record_id, record_kind.what))


def list_jobs(
    database: Database,
    *,
    state: str | None = None,
    actor: str | None = None,
    queue: str | None = None,
    root_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[JobView]:
    """Return recorded jobs matching every filter given, newest first (by when they were sent)."""
    query = select(Job).order_by(Job.enqueued_at.desc(), Job.message_id).limit(limit).offset(offset)
    for column, value in ((Job.state, state), (Job.actor, actor), (Job.queue, queue), (Job.root_id, root_id)):
        if value:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Job.enqueued_at >= since)
    with database.session() as session:
        return [view_from_row(row) for row in session.scalars(query)]


def job_counts(database: Database, *, since: datetime) -> dict[str, int]:
    """How many recorded jobs sent since ``since`` are in each state (one indexed query)."""
    query = select(Job.state, func.count()).where(Job.enqueued_at >= since).group_by(Job.state)
    with database.session() as session:
        return {state: count for state, count in session.execute(query)}
