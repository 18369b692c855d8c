"""Explanation records: one per (experiment, signal, method, parameters), and batches of them.

An explanation's id is a digest of what was asked, so the same request finds the stored
explanation instead of computing it again. Its arrays live in an ``.npz`` artifact; the row
keeps the paths and a compact summary. A batch is one fan-out of explanations: the row
lists its members when it is fanned out and their outcomes once it is finalized.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.store.db import Database
from actors.store.domain import fail_held, row_or_missing
from actors.store.models import Base, utcnow
from actors.store.outbox import stage_events

__all__ = [
    "BATCH_STATES",
    "EXPLANATION_STATES",
    "WHOLE_RECORD",
    "Explanation",
    "ExplanationBatch",
    "ExplanationClaim",
    "batch_summary",
    "claim_explanation",
    "complete_explanation",
    "create_batch",
    "explanation_key",
    "explanation_summary",
    "fail_explanation",
    "find_batch",
    "find_explanations",
    "finish_batch",
    "get_batch",
    "get_explanation",
]

EXPLANATION_STATES = ("running", "completed", "failed")
WHOLE_RECORD = "all"  # a signal's window that means every window of its record
BATCH_STATES = ("running", "completed", "failed")


class Explanation(Base):
    """One explained window: the request, its state, artifact paths and compact summary."""

    __tablename__ = "explanations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    split: Mapped[str] = mapped_column(String(10))
    record: Mapped[int] = mapped_column(Integer)
    # NULL: the whole record (its windows stitched); the API spells it ``window="all"``.
    window: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    npz_path: Mapped[str | None] = mapped_column(Text)
    png_path: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExplanationBatch(Base):
    """A fan-out of explanations: its members, counts, per-signal links and aggregate plot."""

    __tablename__ = "explanation_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fanout_id: Mapped[str] = mapped_column(String(64), index=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    method: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    n_signals: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    members: Mapped[list[Any]]
    links: Mapped[list[Any] | None]
    plot_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True)
class ExplanationClaim:
    """The outcome of claiming an explanation id: stored already (``done``) or held by this job."""

    explanation_id: str
    done: bool
    summary: dict[str, Any] | None = None


def explanation_key(
    experiment_id: str, signal: dict[str, Any], method: str, params: dict[str, Any]
) -> str:
    """The id of an explanation: a digest of the experiment, the signal, method and parameters.

    ``params`` must be the resolved parameters (defaults filled in), so leaving a parameter
    out and giving its default name the same explanation.
    """
    request = {
        "experiment_id": experiment_id,
        "signal": {k: signal[k] for k in ("dataset_id", "split", "record", "window")},
        "method": method,
        "params": params,
    }
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return f"xp-{digest[:32]}"


def explanation_summary(row: Explanation) -> dict[str, Any]:
    """Return the JSON-safe summary a job reports for an explanation (no arrays)."""
    return {
        "explanation_id": row.id, "experiment_id": row.experiment_id,
        "signal": {"dataset_id": row.dataset_id, "split": row.split, "record": row.record,
                   "window": WHOLE_RECORD if row.window is None else row.window},
        "method": row.method, "params": row.params, "status": row.status, "job_id": row.job_id,
        "npz_path": row.npz_path, "png_path": row.png_path, "summary": row.summary,
        "error": row.error,
    }


def claim_explanation(
    database: Database, explanation_id: str, job_id: str, *, experiment_id: str,
    signal: dict[str, Any], method: str, params: dict[str, Any],
) -> ExplanationClaim:
    """Claim ``explanation_id`` for ``job_id``, creating its row if needed.

    A completed explanation is not redone (``done``, with its summary); a failed one is tried
    again. The same job may claim again (a redelivered message); another may not while it runs.

    Raises:
        RecordConflict: another job is computing this explanation now.
    """
    try:
        with database.session() as session:
            row = session.get(Explanation, explanation_id, with_for_update=True)
            if row is None:
                window = None if signal["window"] == WHOLE_RECORD else signal["window"]
                session.add(Explanation(
                    id=explanation_id, experiment_id=experiment_id, method=method, params=params,
                    status="running", job_id=job_id, **{**signal, "window": window},
                ))
                return ExplanationClaim(explanation_id, done=False)
            if row.status == "completed":
                return ExplanationClaim(explanation_id, done=True, summary=explanation_summary(row))
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(
                    f"explanation {explanation_id!r} is being computed by job {row.job_id}")
            row.status, row.job_id, row.error = "running", job_id, None
            return ExplanationClaim(explanation_id, done=False)
    except StoreError as exc:
        # Two jobs inserting the same new id at once: the loser sees the primary key taken.
        if isinstance(exc.__cause__, IntegrityError):
            raise RecordConflict(
                f"explanation {explanation_id!r} was claimed by another job at the same time"
            ) from None
        raise


def complete_explanation(
    database: Database, explanation_id: str, job_id: str, *, npz_path: str, png_path: str,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Mark the explanation completed with its artifact paths and summary; return its summary.

    Raises:
        RecordConflict: the explanation is no longer claimed by ``job_id``.
    """
    with database.session() as session:
        row = session.get(Explanation, explanation_id, with_for_update=True)
        if row is None or row.job_id != job_id:
            raise RecordConflict(f"explanation {explanation_id!r} is no longer claimed by job {job_id}")
        row.npz_path, row.png_path, row.summary = npz_path, png_path, summary
        row.status, row.error = "completed", None
        return explanation_summary(row)


def fail_explanation(database: Database, explanation_id: str, job_id: str, error: str) -> None:
    """Mark the explanation failed with the reason, if this job still holds it."""
    fail_held(database, Explanation, explanation_id, job_id, error)


def get_explanation(database: Database, explanation_id: str) -> dict[str, Any]:
    """Return an explanation's summary; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, Explanation, explanation_id, "explanation")
        return explanation_summary(row)


def find_explanations(database: Database, explanation_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the summaries of those of ``explanation_ids`` that exist, by id."""
    found: dict[str, dict[str, Any]] = {}
    with database.session() as session:
        # Chunks keep the IN list under every driver's bound-parameter limit.
        for start in range(0, len(explanation_ids), 500):
            chunk = explanation_ids[start : start + 500]
            for row in session.scalars(select(Explanation).where(Explanation.id.in_(chunk))):
                found[row.id] = explanation_summary(row)
    return found


def _iso(moment: datetime | None) -> str | None:
    # SQLite gives back naive datetimes; every time stored here is UTC.
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def batch_summary(row: ExplanationBatch, *, links: bool = True) -> dict[str, Any]:
    """Return a batch's JSON-safe summary (its per-signal links only when asked)."""
    out: dict[str, Any] = {
        "batch_id": row.id, "fanout_id": row.fanout_id, "experiment_id": row.experiment_id,
        "method": row.method, "params": row.params, "status": row.status, "job_id": row.job_id,
        "n_signals": row.n_signals, "done": row.done, "failed": row.failed,
        "plot_path": row.plot_path,
        "finished_at": _iso(row.finished_at),
    }
    if links:
        out["members"], out["links"] = row.members, row.links
    return out


def create_batch(
    database: Database, batch_id: str, job_id: str, *, fanout_id: str, experiment_id: str,
    method: str, params: dict[str, Any], members: list[dict[str, Any]],
) -> dict[str, Any]:
    """Record a running batch and its members; return its summary.

    The same job may write it again (a redelivered message fans out anew with new members).

    Raises:
        RecordConflict: another job already owns a batch with this id.
    """
    try:
        with database.session() as session:
            row = session.get(ExplanationBatch, batch_id, with_for_update=True)
            if row is not None and row.job_id != job_id:
                raise RecordConflict(f"explanation batch {batch_id!r} belongs to job {row.job_id}")
            if row is None:
                row = ExplanationBatch(id=batch_id, job_id=job_id)
                session.add(row)
            row.fanout_id, row.experiment_id, row.method = fanout_id, experiment_id, method
            row.params = params
            row.members = members
            row.links = None
            row.status, row.n_signals, row.done, row.failed = "running", len(members), 0, 0
            row.plot_path, row.finished_at = None, None
            session.flush()
            return batch_summary(row)
    except StoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            raise RecordConflict(f"explanation batch {batch_id!r} was created by another job") from None
        raise


def finish_batch(
    database: Database, batch_id: str, *, status: str, done: int, failed: int,
    links: list[dict[str, Any]], plot_path: str | None,
    events: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Write a batch's outcome once, with ``events(summary)`` to the outbox in the same transaction;
    a batch already finished is returned as it is.

    Raises:
        RecordNotFound: no such batch.
    """
    if status not in ("completed", "failed"):
        raise ValueError(f"a batch finishes completed or failed, not {status!r}")
    with database.session() as session:
        row = session.get(ExplanationBatch, batch_id, with_for_update=True)
        if row is None:
            raise RecordNotFound(f"no explanation batch with id {batch_id!r}")
        if row.status == "running":
            row.status, row.done, row.failed = status, done, failed
            row.links = links
            row.plot_path, row.finished_at = plot_path, utcnow()
            if events is not None:
                stage_events(session, events(batch_summary(row, links=False)))
        return batch_summary(row, links=False)


def find_batch(database: Database, batch_id: str) -> dict[str, Any] | None:
    """Return a batch's summary with its members and links, or ``None`` when there is none."""
    with database.session() as session:
        row = session.get(ExplanationBatch, batch_id)
        return None if row is None else batch_summary(row)


def get_batch(database: Database, batch_id: str) -> dict[str, Any]:
    """Return a batch's summary with its members and links; raises ``RecordNotFound``."""
    batch = find_batch(database, batch_id)
    if batch is None:
        raise RecordNotFound(f"no explanation batch with id {batch_id!r}")
    return batch
