"""Callers' view of jobs: read a job by message id, cancel it, wait for it."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import dramatiq

from actors.platform.broker.connection import redis_client
from actors.store.db import get_database
from actors.store.jobs import JobStore, JobView
from actors.store.trees import JobTree, find_root, read_tree
from config.settings import Settings, get_settings

__all__ = ["get_job", "get_tree", "job_store", "request_cancel", "wait_for_job", "wait_for_tree"]


@functools.cache
def job_store(settings: Settings | None = None) -> JobStore:
    """Return this process's job store (the tracking middleware's, when one is set up)."""
    from actors.platform.middleware import JobTracking

    for middleware in dramatiq.get_broker().middleware:
        if isinstance(middleware, JobTracking):
            return middleware.store
    settings = settings or get_settings()
    return JobStore(
        redis_client(settings.redis_url, settings.redis_ca_file), get_database(settings.database_url),
        cache_ttl_s=settings.job_cache_ttl_s,
    )


def get_job(message_id: str) -> JobView:
    """Return a job's state, progress, timings and error; raises ``JobNotFound``."""
    return job_store().get(message_id)


def request_cancel(message_id: str) -> JobView:
    """Cancel a job now, from this process: queued jobs are skipped, running ones stop."""
    return job_store().request_cancel(message_id)


def get_tree(any_id: str) -> JobTree:
    """Return the tree that ``any_id`` belongs to, resolved from any id; raises ``JobNotFound``.

    ``any_id`` may be a message id (of the root or of any job in the tree), a fan-out id, or
    the id of a domain record (dataset, experiment, campaign, deployment, analysis, ...).
    """
    from actors.platform.fanout import fanout_store

    store = job_store()
    root_id, kind, subject_id = find_root(store, fanout_store(), any_id)
    tree = read_tree(store, root_id)
    tree.resolved_from, tree.subject_id = kind, subject_id
    return tree


def wait_for_tree(
    any_id: str,
    *,
    timeout_s: float = 600.0,
    poll_s: float = 0.2,
    on_update: Callable[[JobTree], None] | None = None,
) -> JobTree:
    """Poll a tree (resolved from any id) until every job in it is final; raises ``TimeoutError``."""
    deadline = time.monotonic() + timeout_s
    while True:
        tree = get_tree(any_id)
        if on_update is not None:
            on_update(tree)
        if tree.final:
            return tree
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the work of {any_id} is still {tree.state} after {timeout_s:g} s")
        time.sleep(poll_s)


def wait_for_job(
    message_id: str,
    *,
    timeout_s: float = 600.0,
    poll_s: float = 0.1,
    on_update: Callable[[JobView], None] | None = None,
    tree: bool = True,
) -> JobView:
    """Poll a job until it and every job it launched are final; return the job's own view.

    A launcher (a batch, a deployment, a campaign) ends long before the work it sent: the
    wait goes on until that work is final too (``tree=False``: this job alone). Raises
    ``TimeoutError`` past the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        view = get_job(message_id)
        if on_update is not None:
            on_update(view)
        if view.final and (not tree or read_tree(job_store(), view.root_id or message_id).subtree(message_id).final):
            return view
        if time.monotonic() >= deadline:
            if view.final:
                raise TimeoutError(f"job {message_id} {view.state}, but the work it launched is still running "
                                   f"after {timeout_s:g} s")
            raise TimeoutError(f"job {message_id} still {view.state} after {timeout_s:g} s")
        time.sleep(poll_s)
