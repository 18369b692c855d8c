"""Prometheus metrics: queue depths and job outcomes for the cluster, Dramatiq's for this host.

Job outcomes are counted in Redis, riding in each attempt's ack (no round trip of their
own), so they are totals for every worker on every host, kept across worker restarts. Queue
depths are read from Redis when scraped. Dramatiq's own middleware records each worker
process's metrics in a multiprocess directory (``PFD_PROMETHEUS=1``); ``pfd metrics``
serves all three on one port per host, so the four Procfile lines need no port each.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis

from actors.platform.broker.command_batch import Batch, register_script
from actors.platform.queue_depths import queue_depths
from actors.store.jobs import live_workers

__all__ = ["DURATION_BUCKETS_S", "ClusterCollector", "JobMetrics", "serve_metrics"]

# Upper bounds of the duration histogram, from no-op jobs to a long training run.
DURATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 14400.0, math.inf)

_COUNT = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
return 0
"""
_SEP = "|"


def _bucket(duration_s: float) -> str:
    return next(repr(le) for le in DURATION_BUCKETS_S if duration_s <= le)


class JobMetrics:
    """Counters of finished attempts by actor, queue and outcome, with a duration histogram."""

    def __init__(self, redis: Redis, *, prefix: str = "pfd") -> None:
        self.redis = redis
        self.keys = [f"{prefix}:metrics:jobs", f"{prefix}:metrics:job_seconds_sum", f"{prefix}:metrics:job_seconds_bucket"]
        self._count = register_script(redis, _COUNT)

    def count_into(self, batch: Batch, *, actor: str, queue: str, outcome: str, duration_s: float) -> None:
        """Queue the count of one finished attempt on ``batch``."""
        series = f"{actor}{_SEP}{queue}"
        args = [f"{series}{_SEP}{outcome}", series, f"{duration_s:.6f}", f"{series}{_SEP}{_bucket(duration_s)}"]
        batch.script(self._count, self.keys, args)

    def read(self) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], float], dict[tuple[str, ...], dict[str, int]]]:
        """Return (attempts by (actor, queue, outcome), seconds by (actor, queue), bucket counts by (actor, queue))."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.keys:
            pipe.hgetall(key)
        jobs, sums, buckets = pipe.execute()
        per_bucket: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
        for field, count in buckets.items():
            actor, queue, le = field.decode().split(_SEP)
            per_bucket[(actor, queue)][le] = int(count)
        return (
            {tuple(f.decode().split(_SEP)): int(n) for f, n in jobs.items()},
            {tuple(f.decode().split(_SEP)): float(s) for f, s in sums.items()},
            dict(per_bucket),
        )


class ClusterCollector:
    """A Prometheus collector of what Redis knows: queue depths, job outcomes, live workers."""

    def __init__(self, redis: Redis, queues: tuple[str, ...], *, prefix: str = "pfd") -> None:
        self.redis = redis
        self.queues = queues
        self.prefix = prefix
        self.metrics = JobMetrics(redis, prefix=prefix)

    def collect(self) -> Iterator[Any]:
        """Yield the metric families, read from Redis at scrape time."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        depth = GaugeMetricFamily("pfd_queue_messages", "Messages per queue: queued, held by a worker (in_flight), "
                                  "delayed (retries), dead-lettered.", labels=["queue", "state"])
        for row in queue_depths(self.redis, self.queues):
            for state in ("queued", "in_flight", "delayed", "dead"):
                depth.add_metric([row.queue, state], getattr(row, state))
        yield depth
        outcomes, sums, buckets = self.metrics.read()
        jobs = CounterMetricFamily("pfd_jobs", "Attempts finished, by actor, queue and outcome.",
                                   labels=["actor", "queue", "outcome"])
        for labels, count in sorted(outcomes.items()):
            jobs.add_metric(list(labels), count)
        yield jobs
        durations = HistogramMetricFamily("pfd_job_duration_seconds", "How long attempts ran, by actor and queue.",
                                          labels=["actor", "queue"])
        for labels, counts in sorted(buckets.items()):
            cumulative, total = [], 0
            for le in DURATION_BUCKETS_S:
                total += counts.get(repr(le), 0)
                cumulative.append(("+Inf" if le == math.inf else repr(le), total))
            durations.add_metric(list(labels), cumulative, sum_value=sums.get(labels, 0.0))
        yield durations
        alive = sum(1 for _ in self.redis.scan_iter(match=f"{self.prefix}:worker:*", count=1000))
        yield GaugeMetricFamily("pfd_worker_processes", "Worker processes with a recent heartbeat.", value=alive)
        per_queue = GaugeMetricFamily("pfd_queue_workers", "Worker processes with a recent heartbeat, per queue "
                                      "they consume.", labels=["queue"])
        consuming = live_workers(self.redis, self.prefix)
        for queue in self.queues:
            per_queue.add_metric([queue], len(consuming.get(queue, [])))
        yield per_queue


def serve_metrics(host: str, port: int, *, redis: Redis, queues: tuple[str, ...],
                  worker_metrics_dir: Path | None, cluster: bool = True) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``host:port`` in a thread; return (server, thread).

    ``worker_metrics_dir``: the multiprocess directory this host's workers write Dramatiq's
    metrics to (None: none). ``cluster``: also the Redis-wide series (serve them from one
    host only, or aggregate them with ``max``: every host would report the same values).
    """
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if cluster:
        registry.register(ClusterCollector(redis, queues))
    if worker_metrics_dir is not None:
        worker_metrics_dir.mkdir(parents=True, exist_ok=True)
        MultiProcessCollector(registry, path=str(worker_metrics_dir))
    return start_http_server(port, addr=host, registry=registry)
