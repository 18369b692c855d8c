"""What every domain table shares: a record claimed by a job, released when the job dies."""

from __future__ import annotations

from sqlalchemy import update

from actors.store.db import Database
from actors.store.models import Base

__all__ = ["CLAIMABLE_STATUSES", "release_domain_records"]

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
