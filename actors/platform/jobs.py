"""Callers' view of jobs: read a job by message id, cancel it, wait for it."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import dramatiq

from actors.platform.broker.connection import redis_client
from actors.store.db import get_database
from actors.store.jobs import JobStore, JobView
from config.settings import Settings, get_settings

__all__ = ["get_job", "job_store", "request_cancel", "wait_for_job"]


@functools.cache
def job_store(settings: Settings | None = None) -> JobStore:
    """Return this process's job store (the tracking middleware's, when one is set up)."""
    from actors.platform.middleware import JobTracking

    for middleware in dramatiq.get_broker().middleware:
        if isinstance(middleware, JobTracking):
            return middleware.store
    settings = settings or get_settings()
    return JobStore(
        redis_client(settings.redis_url), get_database(settings.database_url),
        cache_ttl_s=settings.job_cache_ttl_s,
    )


def get_job(message_id: str) -> JobView:
    """Return a job's state, progress, timings and error; raises ``JobNotFound``."""
    return job_store().get(message_id)


def request_cancel(message_id: str) -> JobView:
    """Cancel a job now, from this process: queued jobs are skipped, running ones stop."""
    return job_store().request_cancel(message_id)


def wait_for_job(
    message_id: str,
    *,
    timeout_s: float = 600.0,
    poll_s: float = 0.1,
    on_update: Callable[[JobView], None] | None = None,
) -> JobView:
    """Poll a job until it reaches a final state; raises ``TimeoutError`` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = get_job(message_id)
        if on_update is not None:
            on_update(view)
        if view.final:
            return view
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {message_id} still {view.state} after {timeout_s:g} s")
        time.sleep(poll_s)
