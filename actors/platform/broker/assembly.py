"""The broker's assembly: one function adds every middleware before any actor module is imported."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import JSONEncoder
from dramatiq.middleware import CurrentMessage, GroupCallbacks, Retries
from dramatiq.rate_limits.backends import RedisBackend as RedisRateLimiterBackend
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend as RedisResultBackend
from periodiq import PeriodiqMiddleware
from redis import Redis

from actors.platform.broker.connection import redis_client
from actors.platform.broker.redis_broker import JsonOnlyRedisBroker
from actors.platform.broker.signing import SigningEncoder
from actors.platform.middleware import (
    CrashGuard,
    FanoutMembers,
    GracefulShutdown,
    JobTracking,
    LogContext,
    RedisGuard,
    SchemaGuard,
    Sweeper,
)
from actors.platform.redelivery import Redelivery
from actors.store.db import get_database
from actors.store.jobs import JobStore
from config.logging import configure_logging
from config.queues import CRASH_GUARDED_QUEUES
from config.settings import Settings

__all__ = ["setup_broker"]


def _point_metrics_at(directory: Path) -> None:
    """Make Dramatiq's Prometheus middleware and prometheus_client write to ``directory``."""
    # Both read these when first imported, so this runs before either is.
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "dramatiq_prom_db"):
        os.environ[name] = str(directory)


def setup_broker(settings: Settings, *, stub: bool = False, redis: Redis | None = None) -> dramatiq.Broker:
    """Build the broker with every middleware and make it Dramatiq's global broker.

    ``stub=True`` gives an in-process ``StubBroker`` (for tests of one actor, or the demo
    when no Redis can be had); job state then lives in ``redis`` (a fake one is fine).
    """
    configure_logging(settings)
    # Before any backend is built: the results backend takes the encoder it finds then.
    keys = [key.get_secret_value().encode() for key in settings.message_keys]
    dramatiq.set_encoder(SigningEncoder(keys) if keys else JSONEncoder())
    ttl_ms = settings.result_ttl_s * 1000
    if stub:
        from dramatiq.rate_limits.backends import StubBackend as StubRateLimiterBackend
        from dramatiq.results.backends import StubBackend as StubResultBackend

        broker: dramatiq.Broker = StubBroker()
        results_backend = StubResultBackend()
        limiter_backend = StubRateLimiterBackend()
        if redis is None:
            raise ValueError("a stub broker still needs a Redis-compatible client for job state")
    else:
        redis = redis or redis_client(settings.redis_url, settings.redis_ca_file)
        broker = JsonOnlyRedisBroker(
            client=redis,
            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            enqueue_wait_s=settings.broker_enqueue_wait_s,
        )
        results_backend = RedisResultBackend(client=redis)
        limiter_backend = RedisRateLimiterBackend(client=redis)
    job_redis = redis

    @functools.cache
    def store() -> JobStore:
        return JobStore(job_redis, get_database(settings.database_url), cache_ttl_s=settings.job_cache_ttl_s)

    # First of all boot hooks: a worker that Redis refuses stops before any thread starts.
    if isinstance(broker, JsonOnlyRedisBroker):
        guarded = broker.client
        broker.add_middleware(RedisGuard(client=lambda: guarded), before=Retries)
    # Log context, then tracking, just before Retries: after-hooks run in reverse order, so
    # theirs run once Retries has decided whether a retry follows.
    broker.add_middleware(LogContext(), before=Retries)
    broker.add_middleware(
        JobTracking(
            store=store,
            flush_interval_s=settings.job_flush_interval_s,
            flush_batch=settings.job_flush_batch,
            settle_s=settings.job_record_settle_s,
            heartbeat_s=settings.worker_heartbeat_s,
            record=stub or settings.workers_record_jobs,
        ),
        before=Retries,
    )
    # After JobTracking, so a refused message's record carries its attempt's start.
    broker.add_middleware(CrashGuard(
        store=store, queues=CRASH_GUARDED_QUEUES, max_starts=settings.crash_guard_max_starts,
        ttl_s=settings.job_cache_ttl_s,
    ))
    if isinstance(broker, JsonOnlyRedisBroker):
        redis_broker = broker
        broker.add_middleware(Sweeper(
            redelivery=lambda: Redelivery(redis_broker, store()), interval_s=settings.broker_sweep_interval_s,
            heartbeat_timeout_s=settings.broker_heartbeat_timeout_ms / 1000,
        ))
    broker.add_middleware(SchemaGuard(database=lambda: get_database(settings.database_url)))
    broker.add_middleware(GracefulShutdown())
    broker.add_middleware(Results(backend=results_backend, result_ttl=ttl_ms))
    broker.add_middleware(GroupCallbacks(limiter_backend, barrier_ttl=max(ttl_ms, 86_400_000)))
    # After GroupCallbacks, so its after-hook counts a member before the group's callback fires.
    broker.add_middleware(FanoutMembers(), after=GroupCallbacks)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PeriodiqMiddleware(skip_delay=30))
    if settings.prometheus:
        _point_metrics_at(settings.metrics_dir)
        from actors.platform.middleware.worker_metrics import WorkerMetrics

        broker.add_middleware(WorkerMetrics())
    dramatiq.set_broker(broker)
    return broker
