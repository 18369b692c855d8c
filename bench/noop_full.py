"""A no-op actor on the full PFD stack (job records, progress, log line), for dispatch benches."""

from __future__ import annotations

from actors.platform.base import Payload, job_actor
from actors.platform.broker.assembly import setup_broker
from actors.platform.context import JobContext
from config.queues import HIGH_PRIORITY, ActorPolicy
from config.settings import get_settings

broker = setup_broker(get_settings())


class Nothing(Payload):
    """No arguments."""


@job_actor(schema=Nothing, name="bench_noop", policy=ActorPolicy(HIGH_PRIORITY, time_limit_ms=10_000))
def bench_noop(payload: Nothing, job: JobContext) -> None:
    """Do nothing: every cost measured is the platform's."""
