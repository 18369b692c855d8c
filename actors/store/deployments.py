"""Deployment records: one experiment's model exported, optimised, quantised and benchmarked.

A deployment belongs to one experiment and one configuration (the stages' options). Its id
is a digest of both, so asking again for a deployment that is ready returns it as recorded.
``stages`` maps each stage to its job id, state, compact summary and error: the launcher
writes the four job ids before the pipeline is sent, and each stage claims its entry. A
stage replaces its own variants (by name) in ``variants`` under a row lock, so stages run
alone and stages of a pipeline never lose each other's writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.store.db import Database
from actors.store.models import Base, utcnow
from actors.store.outbox import stage_events

__all__ = [
    "DEPLOYMENT_STATES",
    "STAGES",
    "Deployment",
    "DeploymentClaim",
    "StageClaim",
    "claim_stage",
    "complete_stage",
    "deployment_id_for",
    "deployment_summary",
    "ensure_deployment",
    "fail_stage",
    "get_deployment",
    "open_deployment",
    "record_launch",
]

STAGES = ("export", "optimize", "quantize", "benchmark")
# queued: launched, no stage started; running: a stage runs or the pipeline goes on;
# partial: some stages done and none under way (stages run alone); ready: benchmarked.
DEPLOYMENT_STATES = ("queued", "running", "partial", "ready", "failed", "cancelled")


class Deployment(Base):
    """One deployment: its variants (files and metrics), benchmark table and stage jobs."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), index=True)
    stage: Mapped[str | None] = mapped_column(String(20))  # the stage running, or the last one
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the launching job
    stages: Mapped[dict[str, Any]]
    variants: Mapped[list[Any]]
    benchmark: Mapped[dict[str, Any] | None]
    benchmark_json_path: Mapped[str | None] = mapped_column(Text)
    benchmark_png_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True)
class DeploymentClaim:
    """What ``open_deployment`` decided: ``launch`` it, or leave it (``ready`` or ``under_way``)."""

    action: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageClaim:
    """A stage held by a job (``done`` when it already completed: ``summary`` is its result)."""

    done: bool
    deployment: dict[str, Any]
    summary: dict[str, Any] | None = None


def deployment_id_for(experiment_id: str, config: dict[str, Any]) -> tuple[str, str]:
    """Return ``(deployment id, config hash)``: the same experiment and options give the same id."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    config_hash = hashlib.sha256(canonical.encode()).hexdigest()
    digest = hashlib.sha256(f"{experiment_id}\n{config_hash}".encode()).hexdigest()
    return f"dep-{digest[:24]}", config_hash


def deployment_summary(row: Deployment) -> dict[str, Any]:
    """Return the JSON-safe view of a deployment (the record, with its table)."""
    return {
        "deployment_id": row.id, "experiment_id": row.experiment_id, "config": row.config,
        "config_hash": row.config_hash, "status": row.status, "stage": row.stage, "job_id": row.job_id,
        "stages": row.stages, "variants": row.variants, "benchmark": row.benchmark,
        "benchmark_json_path": row.benchmark_json_path, "benchmark_png_path": row.benchmark_png_path,
        "error": row.error,
    }


def _conflict_on_integrity(exc: StoreError, deployment_id: str) -> None:
    if isinstance(exc.__cause__, IntegrityError):
        raise RecordConflict(f"deployment {deployment_id!r} was created by another job at the same time") from None


def _reset(row: Deployment, job_id: str, original: dict[str, Any]) -> None:
    row.status, row.stage, row.job_id, row.error, row.finished_at = "queued", None, job_id, None, None
    row.stages, row.variants, row.benchmark = {}, [original], None
    row.benchmark_json_path = row.benchmark_png_path = None


def open_deployment(
    database: Database, deployment_id: str, job_id: str, *, experiment_id: str, config: dict[str, Any],
    config_hash: str, original: dict[str, Any], redo: bool = False,
) -> DeploymentClaim:
    """Create or reopen a deployment for launch by ``job_id``.

    ``ready`` (kept as recorded unless ``redo``) and ``under_way`` (another job launched it
    and its pipeline still runs) leave the record alone; otherwise the record is reset to
    ``queued`` with only the ``original`` variant, and the action is ``launch``.
    """
    try:
        with database.session() as session:
            row = session.get(Deployment, deployment_id, with_for_update=True)
            if row is None:
                row = Deployment(id=deployment_id, experiment_id=experiment_id, config=config, config_hash=config_hash,
                                 status="queued", job_id=job_id, stages={}, variants=[original])
                session.add(row)
                session.flush()
                return DeploymentClaim("launch", deployment_summary(row))
            if row.status == "ready" and not redo:
                return DeploymentClaim("ready", deployment_summary(row))
            if row.status in ("queued", "running") and row.job_id != job_id:
                return DeploymentClaim("under_way", deployment_summary(row))
            if row.job_id != job_id or row.status not in ("queued", "running"):
                _reset(row, job_id, original)  # a new launch; a redelivered launcher keeps its record
            return DeploymentClaim("launch", deployment_summary(row))
    except StoreError as exc:
        _conflict_on_integrity(exc, deployment_id)
        raise


def ensure_deployment(
    database: Database, deployment_id: str, *, experiment_id: str, config: dict[str, Any], original: dict[str, Any],
) -> dict[str, Any]:
    """Return the deployment, creating it ``partial`` with the ``original`` variant (a stage run alone)."""
    config_hash = deployment_id_for(experiment_id, config)[1]
    try:
        with database.session() as session:
            row = session.get(Deployment, deployment_id, with_for_update=True)
            if row is None:
                row = Deployment(id=deployment_id, experiment_id=experiment_id, config=config, config_hash=config_hash,
                                 status="partial", stages={}, variants=[original])
                session.add(row)
                session.flush()
            elif row.experiment_id != experiment_id:
                raise RecordConflict(f"deployment {deployment_id!r} belongs to experiment {row.experiment_id!r}")
            return deployment_summary(row)
    except StoreError as exc:
        _conflict_on_integrity(exc, deployment_id)
        raise


def record_launch(database: Database, deployment_id: str, job_id: str, stage_jobs: dict[str, str]) -> dict[str, Any]:
    """Write the pipeline's stage job ids (before it is sent); raises ``RecordConflict`` if not held."""
    with database.session() as session:
        row = _held(session, deployment_id, job_id)
        recorded = row.stages or {}
        # A redelivered launcher writes the same ids again: stages that already began keep their entries.
        row.stages = {
            stage: recorded[stage] if (recorded.get(stage) or {}).get("job_id") == message_id
            else {"job_id": message_id, "status": "queued"}
            for stage, message_id in stage_jobs.items()
        }
        return deployment_summary(row)


def _held(session: Any, deployment_id: str, job_id: str) -> Deployment:
    row = session.get(Deployment, deployment_id, with_for_update=True)
    if row is None or row.job_id != job_id:
        raise RecordConflict(f"deployment {deployment_id!r} is no longer launched by job {job_id}")
    return row


def _locked(session: Any, deployment_id: str) -> Deployment:
    row = session.get(Deployment, deployment_id, with_for_update=True)
    if row is None:
        raise RecordNotFound(f"no deployment with id {deployment_id!r}")
    return row


def claim_stage(database: Database, deployment_id: str, stage: str, job_id: str) -> StageClaim:
    """Hold ``stage`` of the deployment for ``job_id``; a completed stage is ``done`` with its summary.

    Raises:
        RecordNotFound: no such deployment. RecordConflict: another job runs this stage.
    """
    with database.session() as session:
        row = _locked(session, deployment_id)
        entry = dict((row.stages or {}).get(stage) or {})
        if entry.get("status") == "completed":
            return StageClaim(True, deployment_summary(row), entry.get("summary"))
        if entry.get("status") == "running" and entry.get("job_id") != job_id:
            raise RecordConflict(f"stage {stage} of deployment {deployment_id!r} is run by job {entry['job_id']}")
        row.stages = {**(row.stages or {}), stage: {"job_id": job_id, "status": "running"}}
        row.status, row.stage, row.error = "running", stage, None
        return StageClaim(False, deployment_summary(row))


def complete_stage(
    database: Database, deployment_id: str, stage: str, job_id: str, *, variants: list[dict[str, Any]],
    result: dict[str, Any], after: dict[str, Any] | None, status: str, events: Iterable[dict[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    """Record a stage's result and return its summary (what the stage returns, and a pipeline passes on).

    ``variants`` replace those of the same name; ``status`` is the deployment's new state; ``fields``
    are the benchmark table and paths, from the last stage; ``events`` go to the outbox in the same
    transaction. Raises ``RecordConflict`` when another job
    holds the stage now.
    """
    with database.session() as session:
        row = _locked(session, deployment_id)
        entry = (row.stages or {}).get(stage) or {}
        if entry.get("job_id") != job_id:
            raise RecordConflict(f"stage {stage} of deployment {deployment_id!r} is no longer held by job {job_id}")
        if entry.get("status") == "completed":
            return entry["summary"]
        names = [variant["name"] for variant in variants]
        row.variants = [v for v in row.variants or [] if v["name"] not in names] + list(variants)
        summary = {"deployment_id": row.id, "experiment_id": row.experiment_id, "stage": stage, "job_id": job_id,
                   "after": after, "variants": [v["name"] for v in row.variants], "result": result}
        row.stages = {**row.stages, stage: {"job_id": job_id, "status": "completed", "summary": summary}}
        row.status, row.stage, row.error = status, stage, None
        for name, value in fields.items():
            setattr(row, name, value)
        if status == "ready":
            row.finished_at = utcnow()
        stage_events(session, events)
        return summary


def fail_stage(
    database: Database, deployment_id: str, stage: str, job_id: str, error: str, *, status: str = "failed",
) -> bool:
    """Record why ``job_id``'s run of ``stage`` ended (``failed`` or ``cancelled``); return whether it was marked.

    Only the job holding the stage, while it runs, marks it: a completed stage is kept.
    """
    if status not in ("failed", "cancelled"):
        raise ValueError(f"a stage ends failed or cancelled, not {status!r}")
    with database.session() as session:
        row = session.get(Deployment, deployment_id, with_for_update=True)
        if row is None:
            return False
        entry = (row.stages or {}).get(stage) or {}
        if entry.get("job_id") != job_id or entry.get("status") != "running":
            return False
        row.stages = {**row.stages, stage: {**entry, "status": status, "error": error[:2000]}}
        row.status, row.stage, row.error, row.finished_at = status, stage, f"{stage}: {error}"[:4000], utcnow()
        return True


def get_deployment(database: Database, deployment_id: str) -> dict[str, Any]:
    """Return a deployment's record; raises ``RecordNotFound``."""
    with database.session() as session:
        row = session.get(Deployment, deployment_id)
        if row is None:
            raise RecordNotFound(f"no deployment with id {deployment_id!r}")
        return deployment_summary(row)
