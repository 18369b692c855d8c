"""The same no-op actor on raw Dramatiq with no extra middleware, for comparison."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from config.settings import get_settings

broker = RedisBroker(url=get_settings().redis_url)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", queue_name="high_priority")
def bench_noop() -> None:
    """Do nothing."""
