"""Actors for the memory benchmark: one per kind of job the platform runs.

Loaded by the Procfile's worker lines beside ``actors.app`` (``actors.app bench.memory_actors``).
"""

from __future__ import annotations

from pydantic import Field

from actors.app import broker  # noqa: F401  (the broker, set up before these actors bind to it)
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.errors import TransientError
from config.queues import HIGH_PRIORITY, ActorPolicy
from pipeline.errors import InvalidInput

__all__ = ["mem_fail", "mem_finalize", "mem_member", "mem_progress", "mem_result", "mem_retry", "mem_succeed"]

_QUICK = dict(time_limit_ms=30_000, max_retries=1, min_backoff_ms=10, max_backoff_ms=50)


class Nothing(Payload):
    """No arguments."""


class Attempt(Payload):
    """The attempt a retried job succeeds on, counted by Dramatiq's retries option."""

    n: int = Field(ge=0)


class Finalize(Payload):
    """The finalize message of a fan-out."""

    fanout_id: str


@job_actor(schema=Nothing, name="mem_succeed", policy=ActorPolicy(HIGH_PRIORITY, **_QUICK))
def mem_succeed(payload: Nothing, job: JobContext) -> None:
    """Succeed at once."""


@job_actor(schema=Nothing, name="mem_progress", policy=ActorPolicy(HIGH_PRIORITY, **_QUICK))
def mem_progress(payload: Nothing, job: JobContext) -> None:
    """Report progress ten times, with metrics, as long work does."""
    for step in range(10):
        job.progress((step + 1) / 10, f"step {step + 1}", step=step, loss=1.0 / (step + 1))


@job_actor(schema=Nothing, name="mem_result", policy=ActorPolicy(HIGH_PRIORITY, store_results=True, **_QUICK))
def mem_result(payload: Nothing, job: JobContext) -> dict:
    """Return a result that goes through the results backend."""
    return {"values": list(range(50))}


@job_actor(schema=Nothing, name="mem_fail", policy=ActorPolicy(HIGH_PRIORITY, **_QUICK))
def mem_fail(payload: Nothing, job: JobContext) -> None:
    """Fail on bad input: never retried, dead-lettered, announced as job.failed."""
    raise InvalidInput("this input is refused")


@job_actor(schema=Attempt, name="mem_retry", policy=ActorPolicy(HIGH_PRIORITY, **_QUICK))
def mem_retry(payload: Attempt, job: JobContext) -> None:
    """Fail with a transient fault on the first attempt, succeed on the retry."""
    if job.attempt == 1:
        raise TransientError("the first attempt meets a transient fault")


@job_actor(schema=Attempt, name="mem_member", policy=ActorPolicy(HIGH_PRIORITY, **_QUICK))
def mem_member(payload: Attempt, job: JobContext) -> dict:
    """A fan-out member with a progress report and a result."""
    job.progress(0.5, "half way")
    return {"n": payload.n}


@job_actor(schema=Finalize, name="mem_finalize", policy=ActorPolicy(HIGH_PRIORITY, store_results=True, **_QUICK))
def mem_finalize(payload: Finalize, job: JobContext) -> dict:
    """Finalize a fan-out: read its counts and record it completed."""
    from actors.platform.fanout import fanout_store, get_fanout

    view = get_fanout(payload.fanout_id)
    fanout_store().finish(payload.fanout_id, "completed", {"done": view.done, "failed": view.failed})
    return {"done": view.done}
