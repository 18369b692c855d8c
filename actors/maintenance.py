"""Periodic maintenance (``high_priority``, scheduled by periodiq, callable by hand)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dramatiq
import structlog
from periodiq import cron
from pydantic import Field

from actors.base import Payload, job_actor
from actors.context import JobContext
from actors.jobs import job_store
from actors.store.db import get_database
from actors.store.domain import release_domain_records
from config.settings import get_settings

__all__ = ["ReapStaleJobs", "reap_stale_jobs"]

log = structlog.get_logger("pfd.maintenance")


class ReapStaleJobs(Payload):
    """Payload of ``reap_stale_jobs``; ``grace_s`` defaults to the setting."""

    grace_s: int | None = Field(None, ge=1)
    dry_run: bool = False


@job_actor(schema=ReapStaleJobs, periodic=cron(get_settings().schedule_reap_stale_jobs))
def reap_stale_jobs(payload: ReapStaleJobs, job: JobContext) -> dict:
    """Fail jobs left ``running`` by a worker that died or that ran far past their limit.

    A job is reaped when it started more than ``grace_s`` ago and either its worker stopped
    beating its heartbeat or it passed its actor's time limit by more than ``grace_s``.
    Domain records the job held (datasets, experiments) are failed with the same reason.
    """
    settings = get_settings()
    grace = payload.grace_s or settings.reaper_grace_s
    store = job_store()
    broker = dramatiq.get_broker()
    now = time.time()
    reaped = []
    for view in store.running_since(datetime.now(UTC) - timedelta(seconds=grace)):
        actor = broker.actors.get(view.actor)
        limit_s = (actor.options.get("time_limit") or 0) / 1000 if actor else 0
        if not store.worker_alive(view.worker):
            reason = f"worker {view.worker or 'unknown'} stopped sending heartbeats"
        elif limit_s and view.started_at is not None and now - view.started_at > limit_s + grace:
            reason = f"running {now - view.started_at:.0f} s, past its {limit_s:g} s time limit"
        else:
            continue
        reaped.append({"message_id": view.message_id, "actor": view.actor, "reason": reason})
        if payload.dry_run:
            continue
        store.record(view.message_id, {
            "message_id": view.message_id, "actor": view.actor, "queue": view.queue,
            "state": "failed", "finished_at": now, "error_type": "JobReaped", "error_message": reason,
        }, ttl_s=settings.job_cache_ttl_s)
        release_domain_records(get_database(settings.database_url), view.message_id, reason)
        log.warning("job.reaped", reaped_message_id=view.message_id, reason=reason)
    store.flush()
    return {"reaped": reaped, "dry_run": payload.dry_run, "grace_s": grace}
