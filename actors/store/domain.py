"""What every domain table shares: a record claimed by a job, released when the job dies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from actors.platform.errors import RecordNotFound
from actors.store.db import Database
from actors.store.models import Base

__all__ = ["CLAIMABLE_STATUSES", "fail_held", "release_domain_records", "row_or_missing"]

# Statuses in which a domain record is held by its job.
CLAIMABLE_STATUSES = ("running",)


def release_domain_records(database: Database, job_id: str, reason: str) -> int:
    """Fail every domain record (any table with job_id/status/error) held by ``job_id``."""
    released = 0
    with database.session() as session:
        for mapper in Base.registry.mappers:
            table = mapper.local_table
            if {"job_id", "status", "error"} <= set(table.columns.keys()):
                result = session.execute(
                    update(table)
                    .where(table.c.job_id == job_id, table.c.status.in_(CLAIMABLE_STATUSES))
                    .values(status="failed", error=reason[:4000])
                )
                released += result.rowcount or 0
    return released


def fail_held(database: Database, model: type[Base], record_id: str, job_id: str, error: str) -> None:
    """Mark a record failed with the reason, if ``job_id`` still holds it (a finished one keeps its outcome)."""
    with database.session() as session:
        row: Any = session.get(model, record_id, with_for_update=True)
        if row is not None and row.job_id == job_id and row.status in CLAIMABLE_STATUSES:
            row.status, row.error = "failed", error[:4000]


def row_or_missing(session: Session, model: type[Base], record_id: str, what: str) -> Any:
    """Return the ``model`` row with ``record_id``; raises ``RecordNotFound`` naming it as ``what``."""
    row = session.get(model, record_id)
    if row is None:
        raise RecordNotFound(f"no {what} with id {record_id!r}")
    return row
