"""Dataset records: claimed atomically by one job, completed once, failed with a reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from actors.platform.errors import RecordConflict
from actors.store.db import Database
from actors.store.domain import fail_held, row_or_missing
from actors.store.models import Dataset, DatasetImport
from actors.store.outbox import stage_events

__all__ = ["Claim", "claim_dataset", "complete_dataset", "dataset_summary", "fail_dataset", "get_dataset", "record_import"]


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a dataset id for a job."""

    dataset_id: str
    done: bool
    summary: dict[str, Any] | None = None


def dataset_summary(row: Dataset) -> dict[str, Any]:
    """Return the JSON-safe summary a job reports for a dataset."""
    return {
        "dataset_id": row.id, "name": row.name, "source": row.source, "status": row.status,
        "path": row.path, "checksum": row.checksum, "mat_dir": row.mat_dir,
        "n_records": row.n_records, "class_counts": row.class_counts, "split_counts": row.split_counts,
    }


def claim_dataset(
    database: Database, dataset_id: str, job_id: str, *, source: str, name: str, config: dict[str, Any] | None = None,
) -> Claim:
    """Claim ``dataset_id`` for ``job_id``.

    A completed dataset is not redone (``done`` is true, with its summary). The same job
    may claim again (a redelivered or retried message); another job may not while it runs.
    """
    try:
        with database.session() as session:
            row = session.get(Dataset, dataset_id, with_for_update=True)
            if row is None:
                session.add(Dataset(id=dataset_id, name=name, source=source, status="running", job_id=job_id, config=config))
                return Claim(dataset_id, done=False)
            if row.status == "completed":
                return Claim(dataset_id, done=True, summary=dataset_summary(row))
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(f"dataset {dataset_id!r} is being written by job {row.job_id}")
            row.status, row.job_id, row.error = "running", job_id, None
            return Claim(dataset_id, done=False)
    except IntegrityError:
        raise RecordConflict(f"dataset {dataset_id!r} was claimed by another job at the same time") from None


def complete_dataset(database: Database, dataset_id: str, job_id: str, *, events: Iterable[dict[str, Any]] = (),
                     **fields: Any) -> dict[str, Any]:
    """Mark the dataset completed with its paths and counts, and add ``events`` to the outbox in
    the same transaction; return its summary."""
    with database.session() as session:
        row = session.get(Dataset, dataset_id, with_for_update=True)
        if row is None or row.job_id != job_id:
            raise RecordConflict(f"dataset {dataset_id!r} is no longer claimed by job {job_id}")
        for name, value in fields.items():
            setattr(row, name, value)
        row.status, row.error = "completed", None
        stage_events(session, events)
        return dataset_summary(row)


def fail_dataset(database: Database, dataset_id: str, job_id: str, error: str) -> None:
    """Mark the dataset failed with the reason, if this job still holds it."""
    fail_held(database, Dataset, dataset_id, job_id, error)


def record_import(
    database: Database, dataset_id: str, job_id: str, *, sources: list[str], n_files: int, failures: list[dict[str, str]],
) -> None:
    """Record what an import read and which files it refused (once per job)."""
    with database.session() as session:
        if session.get(DatasetImport, job_id) is None:
            session.add(DatasetImport(
                id=job_id, dataset_id=dataset_id, job_id=job_id, sources=sources,
                n_files=n_files, n_failed=len(failures), failures=failures,
            ))


def get_dataset(database: Database, dataset_id: str) -> dict[str, Any]:
    """Return a dataset's summary; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, Dataset, dataset_id, "dataset")
        return {**dataset_summary(row), "error": row.error, "job_id": row.job_id, "config": row.config}
