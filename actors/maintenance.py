"""Periodic maintenance (``high_priority``, scheduled by periodiq, callable by hand)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dramatiq
import structlog
from periodiq import cron
from pydantic import Field

from actors.platform.artifact_files import artifact_store, store_is_artifact_root
from actors.platform.artifacts import S3Store
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.jobs import job_store
from actors.store.db import get_database
from actors.store.domain import release_domain_records
from config.queues import QUEUES
from config.settings import get_settings

__all__ = ["CleanArtifacts", "ReapStaleJobs", "ReportDeadLetters", "clean_artifacts", "reap_stale_jobs", "report_dead_letters"]

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


class CleanArtifacts(Payload):
    """Payload of ``clean_artifacts``; ``dry_run`` lists what would go without deleting."""

    dry_run: bool = False


# Folders whose entries are kept for ``run_retention_days``, whatever names them.
_EXPIRING = ("quality",)


def _known_ids() -> dict[str, set[str]]:
    """Record ids per artifact folder named by them (anything else there is an orphan)."""
    from sqlalchemy import select

    from actors.store.experiments import Experiment
    from actors.store.models import Dataset

    with get_database(get_settings().database_url).session() as session:
        return {
            "datasets": set(session.scalars(select(Dataset.id))),
            "experiments": set(session.scalars(select(Experiment.id))),
        }


def _fix_keys_without_ttl(settings, dry_run: bool) -> int:  # type: ignore[no-untyped-def]
    """Give job and fan-out keys that lost their expiry (e.g. written during an outage) one."""
    redis = job_store().redis
    fixed = 0
    for pattern in ("pfd:job:*", "pfd:fanout:*"):
        for key in redis.scan_iter(match=pattern, count=1000):
            if redis.ttl(key) == -1:
                fixed += 1
                if not dry_run:
                    redis.expire(key, settings.job_cache_ttl_s)
    return fixed


@job_actor(schema=CleanArtifacts, periodic=cron(get_settings().schedule_clean_artifacts))
def clean_artifacts(payload: CleanArtifacts, job: JobContext) -> dict:
    """Delete temporary files, artifacts of deleted records and expired run folders (under
    this host's artifact root, and in the shared store when there is one), and trim the
    object store's local cache (abandoned downloads, entries past its bound).

    The real run deletes exactly what the same plan lists in a dry run; Redis job and
    fan-out keys without an expiry get the cache TTL.
    """
    from pipeline.maintenance.cleanup import apply_cleanup, plan_cleanup, plan_object_cleanup

    settings = get_settings()
    known, retention_s = _known_ids(), settings.run_retention_days * 86400
    plan = plan_cleanup(
        settings.artifact_root, known_ids=known, expiring=_EXPIRING,
        temp_max_age_s=settings.temp_file_max_age_s, retention_s=retention_s,
    )
    deleted = plan if payload.dry_run else apply_cleanup(settings.artifact_root, plan)
    store, objects = artifact_store(settings), []
    if not store_is_artifact_root(settings):
        listing = [(o.key, o.size, o.modified) for folder in (*known, *_EXPIRING) for o in store.listing(folder)]
        objects = plan_object_cleanup(listing, known_ids=known, expiring=_EXPIRING,
                                      min_age_s=settings.temp_file_max_age_s, retention_s=retention_s)
        for candidate in [] if payload.dry_run else objects:
            store.delete(candidate.path)
    keys = _fix_keys_without_ttl(settings, payload.dry_run)
    cached = store.cache.clean(settings.temp_file_max_age_s, dry_run=payload.dry_run) if isinstance(store, S3Store) else []
    return {
        "dry_run": payload.dry_run, "deleted": [c.to_dict() for c in deleted][:1000],
        "n_deleted": len(deleted), "bytes": sum(c.bytes for c in deleted), "keys_without_ttl": keys,
        "cache_files_deleted": len(cached), "store": store.url, "objects_deleted": [c.to_dict() for c in objects][:1000],
        "n_objects_deleted": len(objects), "object_bytes": sum(c.bytes for c in objects),
    }


class ReportDeadLetters(Payload):
    """Payload of ``report_dead_letters``; ``threshold`` defaults to the setting."""

    threshold: int | None = Field(None, ge=1)


@job_actor(schema=ReportDeadLetters, periodic=cron(get_settings().schedule_report_dead_letters))
def report_dead_letters(payload: ReportDeadLetters, job: JobContext) -> dict:
    """Count dead letters per queue and actor; announce them when they pass the threshold."""
    from actors.notifications import outbox_event, relay_now
    from actors.platform.dead_letters import list_dead_letters
    from actors.store.outbox import record_events

    threshold = payload.threshold or get_settings().dead_letter_report_threshold
    counts: dict[str, int] = {}
    for queue in QUEUES:
        for letter in list_dead_letters(job_store().redis, queue, limit=100_000):
            name = f"{queue}/{letter.actor}"
            counts[name] = counts.get(name, 0) + 1
    total = sum(counts.values())
    announced = total >= threshold
    if announced:
        # One report per hour at most: the event id is the hour. The report's only record is its event.
        event = outbox_event("deadletters.reported", {"total": total, "threshold": threshold, "counts": counts},
                             event_id=f"deadletters:{time.strftime('%Y%m%d%H', time.gmtime())}")
        record_events(get_database(get_settings().database_url), [event])
        relay_now([event["event_id"]])
    return {"total": total, "threshold": threshold, "counts": counts, "announced": announced}
