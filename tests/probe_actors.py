"""Actors that exist only for tests: each shows one behaviour of the platform.

Workers load this module next to ``actors.app`` (``dramatiq actors.app tests.probe_actors``).
"""

from __future__ import annotations

import os
import time

from pydantic import Field
from redis import Redis

from actors.platform.base import Payload, job_actor
from actors.platform.broker.connection import redis_client
from actors.platform.context import JobContext
from actors.platform.errors import TransientError
from config.queues import QUEUES, ActorPolicy
from config.settings import get_settings
from pipeline.progress import check_stop

FAST_RETRY = dict(max_retries=3, min_backoff_ms=200, max_backoff_ms=2_000, store_results=True)


def _redis() -> Redis:
    settings = get_settings()
    return redis_client(settings.redis_url, settings.redis_ca_file)


class Empty(Payload):
    """No arguments."""


class Tagged(Payload):
    """A key that names the test's own Redis keys."""

    key: str
    failures: int = Field(0, ge=0)


class Steps(Payload):
    """A loop of ``steps`` steps of ``step_s`` seconds, reporting progress each step.

    ``dataset_id`` names a domain record the job works on, for its log lines.
    """

    steps: int = Field(ge=1)
    step_s: float = Field(ge=0)
    dataset_id: str | None = None


class Spin(Payload):
    """Seconds of pure-Python busy work that never checks for a stop."""

    seconds: float = Field(gt=0)


def _probe_for(queue: str):  # type: ignore[no-untyped-def]
    @job_actor(schema=Empty, name=f"probe_{queue}", policy=ActorPolicy(queue, time_limit_ms=30_000, **FAST_RETRY))
    def probe(payload: Empty, job: JobContext) -> dict:
        return {"tag": os.environ.get("PFD_TEST_PROCESS_TAG", ""), "pid": os.getpid(), "queue": job.queue}

    return probe


PROBES = {queue: _probe_for(queue) for queue in QUEUES}


@job_actor(schema=Tagged, policy=ActorPolicy("high_priority", time_limit_ms=30_000, **FAST_RETRY))
def flaky(payload: Tagged, job: JobContext) -> dict:
    """Fail with a transient error ``failures`` times, then succeed; log each attempt's time."""
    client = _redis()
    client.rpush(f"{payload.key}:attempts", time.time())
    attempt = client.incr(f"{payload.key}:count")
    if attempt <= payload.failures:
        raise TransientError(f"transient failure {attempt} of {payload.failures}")
    return {"attempts": attempt}


@job_actor(schema=Tagged, policy=ActorPolicy("high_priority", time_limit_ms=30_000, **FAST_RETRY))
def strict(payload: Tagged, job: JobContext) -> dict:
    """Count attempts; the schema makes any bad payload fail before the body runs."""
    return {"attempts": _redis().incr(f"{payload.key}:count")}


@job_actor(schema=Steps, policy=ActorPolicy("cpu_processing", time_limit_ms=4_000, **FAST_RETRY))
def stepper(payload: Steps, job: JobContext) -> dict:
    """Long work that checks for a stop at every step, as pipeline functions do."""
    for step in range(payload.steps):
        check_stop(job.should_stop)
        time.sleep(payload.step_s)
        job.progress((step + 1) / payload.steps, f"step {step + 1} of {payload.steps}", step=step + 1)
    return {"steps": payload.steps}


@job_actor(schema=Spin, policy=ActorPolicy("cpu_processing", time_limit_ms=2_000, **FAST_RETRY))
def spinner(payload: Spin, job: JobContext) -> dict:
    """Busy work with no stop checks: only Dramatiq's hard time limit can end it."""
    end = time.monotonic() + payload.seconds
    spins = 0
    while time.monotonic() < end:
        spins += 1
    return {"spins": spins}


class Member(Payload):
    """One fan-out member: square ``n`` after ``seconds``; fail on a domain error, or crash outright."""

    n: int
    fail: bool = False
    crash: bool = False
    seconds: float = Field(0.0, ge=0)


class Collect(Payload):
    """The finalize message of a test fan-out."""

    fanout_id: str
    key: str


@job_actor(schema=Member, policy=ActorPolicy("cpu_processing", time_limit_ms=30_000, **FAST_RETRY))
def square(payload: Member, job: JobContext) -> dict | None:
    """A fan-out member: reports progress, then succeeds, fails cleanly, or crashes."""
    job.progress(0.5, "half way")
    end = time.monotonic() + payload.seconds
    while time.monotonic() < end:
        check_stop(job.should_stop)
        time.sleep(0.05)
    if payload.crash:
        raise RuntimeError(f"member {payload.n} crashed")
    if payload.fail:
        from pipeline.errors import InvalidInput

        job.fail(InvalidInput(f"member {payload.n} refused its input"))
        return None
    return {"square": payload.n * payload.n}


@job_actor(schema=Collect, policy=ActorPolicy("high_priority", time_limit_ms=30_000, **FAST_RETRY))
def collect(payload: Collect, job: JobContext) -> dict:
    """Finalize a test fan-out: count the calls, record the fan-out's counts."""
    from actors.platform.fanout import fanout_store, get_fanout

    client = _redis()
    client.incr(f"{payload.key}:finalized")
    view = get_fanout(payload.fanout_id)
    fanout_store().finish(payload.fanout_id, "completed", {"done": view.done, "failed": view.failed})
    return view.to_dict()


class Launch(Payload):
    """A launcher: ``members`` squares of ``seconds`` each, member ``fail`` failing on its input."""

    key: str
    members: int = Field(ge=1)
    seconds: float = Field(0.0, ge=0)
    fail: int | None = None


@job_actor(schema=Launch, policy=ActorPolicy("high_priority", time_limit_ms=30_000, **FAST_RETRY))
def launch_squares(payload: Launch, job: JobContext) -> dict:
    """Fan out squares with ``collect`` as the finalize, and return at once, as real launchers do."""
    import uuid

    from actors.platform.fanout import fan_out

    fanout_id = str(uuid.uuid4())
    members = [square.message(n=n, fail=n == payload.fail, seconds=payload.seconds) for n in range(payload.members)]
    fan_out(members, kind="test", owner_id=payload.key, fanout_id=fanout_id,
            finalize=collect.message(fanout_id=fanout_id, key=payload.key))
    return {"fanout_id": fanout_id, "members": [m.message_id for m in members]}


class Work(Payload):
    """A job that takes ``seconds`` and then records its effect once, keyed by message id."""

    key: str
    seconds: float = Field(ge=0)


@job_actor(schema=Work, policy=ActorPolicy("cpu_processing", time_limit_ms=60_000, **FAST_RETRY))
def durable_work(payload: Work, job: JobContext) -> dict:
    """Count starts and completions per message, so tests see lost or doubled work."""
    client = _redis()
    client.hincrby(f"{payload.key}:starts", job.message_id, 1)
    end = time.monotonic() + payload.seconds
    while time.monotonic() < end:
        check_stop(job.should_stop)
        time.sleep(0.05)
    client.hincrby(f"{payload.key}:done", job.message_id, 1)
    return {"done": True}


class Nap(Payload):
    """How long to sleep."""

    seconds: float = Field(ge=0, le=50)


@job_actor(schema=Nap, policy=ActorPolicy("cpu_processing", time_limit_ms=60_000, **FAST_RETRY))
def nap(payload: Nap, job: JobContext) -> dict:
    """Sleep, touching neither Redis nor the database: work that runs on through a Redis outage."""
    time.sleep(payload.seconds)
    return {"slept_s": payload.seconds}


class Reach(Payload):
    """A URL to fail on, password and all."""

    url: str


@job_actor(schema=Reach, policy=ActorPolicy("high_priority", time_limit_ms=30_000, **FAST_RETRY))
def leaky(payload: Reach, job: JobContext) -> None:
    """Fail with an error message that quotes a URL with its password."""
    import structlog

    structlog.get_logger("probe").info("probe.connecting", url=payload.url)
    raise ValueError(f"cannot connect to {payload.url}")


@job_actor(schema=Empty, policy=ActorPolicy("cpu_processing", time_limit_ms=30_000, **FAST_RETRY))
def kill_own_process(payload: Empty, job: JobContext) -> None:
    """Take the worker process down, as the kernel's OOM killer would."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@job_actor(schema=Work, policy=ActorPolicy("cpu_processing", time_limit_ms=60_000, **FAST_RETRY))
def chatty_work(payload: Work, job: JobContext) -> dict:
    """Log a line every millisecond for ``seconds``; record when each message started and finished."""
    import structlog

    client = _redis()
    client.hsetnx(f"{payload.key}:started_at", job.message_id, time.time())
    log = structlog.get_logger("probe.chatty")
    end = time.monotonic() + payload.seconds
    lines = 0
    while time.monotonic() < end:
        check_stop(job.should_stop)
        log.info("probe.chatty_line", n=lines)
        lines += 1
        time.sleep(0.001)
    client.hincrby(f"{payload.key}:done", job.message_id, 1)
    return {"lines": lines}
