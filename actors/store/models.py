"""SQLAlchemy models. The schema changes only through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "FINAL_JOB_STATES",
    "JOB_STATES",
    "Base",
    "Dataset",
    "DatasetImport",
    "Job",
    "utcnow",
]

JOB_STATES = ("queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled")
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every PFD Actors table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Job(Base):
    """One Dramatiq message and everything that happened to it."""

    __tablename__ = "jobs"
    # Listings filter by one of these and show the newest first (pfd jobs, the dashboard).
    __table_args__ = (
        Index("ix_jobs_state_enqueued_at", "state", "enqueued_at"),
        Index("ix_jobs_actor_enqueued_at", "actor", "enqueued_at"),
        Index("ix_jobs_queue_enqueued_at", "queue", "enqueued_at"),
    )

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    queue: Mapped[str] = mapped_column(String(100), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(500), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # attempts plus redeliveries after a worker died (migration 0011)
    deliveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enqueued_at: Mapped[datetime | None] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None]
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    fanout_id: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(64))
    root_id: Mapped[str | None] = mapped_column(String(64), index=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Dataset(Base):
    """A dataset file (generated or imported) in the HDF5 layout of DOMAIN.md."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    path: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    mat_dir: Mapped[str | None] = mapped_column(Text)
    n_records: Mapped[int] = mapped_column(Integer, default=0)
    class_counts: Mapped[dict[str, Any] | None]
    split_counts: Mapped[dict[str, Any] | None]
    config: Mapped[dict[str, Any] | None]
    config_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DatasetImport(Base):
    """What one MAT import read, and which files it could not read and why."""

    __tablename__ = "dataset_imports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64))
    sources: Mapped[list[Any]]
    n_files: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
