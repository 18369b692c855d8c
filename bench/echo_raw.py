"""Raw Dramatiq with results and its own (polling) consumer: the latency benchmark's reference."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from config.settings import get_settings

broker = RedisBroker(url=get_settings().redis_url)
broker.add_middleware(Results(backend=RedisBackend(client=broker.client)))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_echo", queue_name="high_priority", store_results=True)
def bench_echo() -> int:
    """Return 1 through the results backend."""
    return 1
