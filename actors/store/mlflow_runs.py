"""Which MLflow run holds a record: one row per (kind, record id), written once.

A training job keeps its experiment's run id here, so a redelivered or retried message
continues the same MLflow run; a campaign keeps its parent run, and each trial its nested one.
The first writer wins: a second job that created a run of its own for the same record reads
the kept one back and uses it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from actors.platform.errors import StoreError
from actors.store.db import Database
from actors.store.models import Base, Dataset, utcnow

__all__ = ["MlflowRun", "dataset_config_hash", "find_mlflow_run", "keep_mlflow_run"]


class MlflowRun(Base):
    """The MLflow run of one record (an experiment, a campaign, a trial, a deployment)."""

    __tablename__ = "mlflow_runs"
    __table_args__ = (UniqueConstraint("kind", "record_id", name="uq_mlflow_runs_kind_record"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    record_id: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def find_mlflow_run(database: Database, kind: str, record_id: str) -> str | None:
    """Return the run id kept for the record, or ``None``."""
    with database.session() as session:
        return session.scalar(select(MlflowRun.run_id).where(MlflowRun.kind == kind, MlflowRun.record_id == record_id))


def keep_mlflow_run(database: Database, kind: str, record_id: str, run_id: str) -> str:
    """Keep ``run_id`` for the record unless one is kept already; return the kept one."""
    try:
        with database.session() as session:
            kept = session.scalar(select(MlflowRun.run_id).where(MlflowRun.kind == kind, MlflowRun.record_id == record_id))
            if kept is None:
                session.add(MlflowRun(kind=kind, record_id=record_id, run_id=run_id))
                return run_id
            return kept
    except StoreError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
    # Another process kept one between our read and our insert: theirs stands.
    return find_mlflow_run(database, kind, record_id) or run_id


def dataset_config_hash(database: Database, dataset_id: str) -> str | None:
    """The config hash of a dataset (what a run's params name it by), or ``None``."""
    with database.session() as session:
        return session.scalar(select(Dataset.config_hash).where(Dataset.id == dataset_id))
