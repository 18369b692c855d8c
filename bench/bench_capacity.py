"""Capacity: what one job costs the shared services, for sizing a deployment of many hosts.

The Procfile's ``high_priority`` line and one recorder, against a Redis of the benchmark's
own and a PostgreSQL database of its own, take ``n`` queued no-op jobs from send to
recorded row. Measured per job: Redis commands (by command) and bytes on the wire, Redis
memory while it waits in the queue, PostgreSQL transactions and rows, the CPU of each
process; and the recorder's rate (jobs whose final row is written, per second). These are
the platform's own costs, the floor under any real job: docs/operations.md ("Capacity")
turns them into where the first bottleneck is at 10 and 100 worker hosts.

Run ``python -m bench.bench_capacity [n]``; figures in ``bench/results/capacity.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis
from sqlalchemy import create_engine, text

from bench.bench_dispatch import _SEND_DRAMATIQ, QUEUE
from bench.common import write_result
from bench.processes import BIN, bench_env, drain, migrate, own_redis, produce, running, wait_for

__all__ = ["run"]

_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_DATABASE = "pfd_bench_capacity"


def _fresh_database() -> str:
    """Drop and create the benchmark's own PostgreSQL database; return its URL."""
    admin = create_engine(_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{_DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{_DATABASE}"'))
    admin.dispose()
    return _ADMIN_URL.rsplit("/", 1)[0] + f"/{_DATABASE}"


def _redis_counters(redis: Redis) -> dict[str, Any]:
    stats = redis.info("commandstats")
    server = redis.info("stats")
    return {"calls": {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()},
            "bytes_in": int(server["total_net_input_bytes"]), "bytes_out": int(server["total_net_output_bytes"])}


def _pg_counters(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        row = connection.execute(text(
            "select xact_commit, tup_inserted, tup_updated, tup_deleted from pg_stat_database "
            "where datname = current_database()")).one()
    engine.dispose()
    return dict(zip(("transactions", "inserted", "updated", "deleted"), (int(v) for v in row)))


def _recorded(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        done = connection.execute(text("select count(*) from jobs where state = 'succeeded'")).scalar_one()
    engine.dispose()
    return int(done)


def run(n: int = 5_000) -> dict[str, Any]:
    """Send, run and record ``n`` no-op jobs; write what each cost the services."""
    with own_redis() as redis_url:
        pg_url = _fresh_database()
        env = bench_env(redis_url, PFD_DATABASE_URL=pg_url)
        migrate(env)
        redis = Redis.from_url(redis_url)
        memory_before = int(redis.info("memory")["used_memory"])
        redis_before, pg_before = _redis_counters(redis), _pg_counters(pg_url)
        sent = produce(_SEND_DRAMATIQ.format(module="bench.noop_full", n=n), env)
        queued_bytes = (int(redis.info("memory")["used_memory"]) - memory_before) / n
        worker_env = {**env, "dramatiq_queue_prefetch": "64"}
        command = [str(BIN / "dramatiq"), "bench.noop_full", "--queues", QUEUE, "--processes", "1", "--threads", "8"]
        with running(command, worker_env) as worker, \
                running([str(BIN / "pfd"), "record-jobs"], env, log_name="recorder") as recorder:
            started = time.perf_counter()
            drained = drain(lambda: redis.hlen(f"dramatiq:{QUEUE}.msgs"), n, worker,
                            groups={"worker": worker.pid, "recorder": recorder.pid})
            wait_for(lambda: _recorded(pg_url) >= n, timeout=600, what="every job's final row", interval=0.2)
            recorded_s = time.perf_counter() - started
        redis_after, pg_after = _redis_counters(redis), _pg_counters(pg_url)
    calls = {name: (redis_after["calls"][name] - redis_before["calls"].get(name, 0)) / n
             for name in redis_after["calls"]}
    calls = {name: round(value, 2) for name, value in sorted(calls.items(), key=lambda kv: -kv[1]) if value >= 0.01}
    figures = {
        "jobs": n, "enqueue_per_s": round(sent["rate"]), "drain_per_s": round(drained.rate),
        "recorded_per_s": round(n / recorded_s),
        "per_job": {
            "redis_commands": round(sum(calls.values()), 2), "redis_commands_by_name": calls,
            "redis_bytes_in": round((redis_after["bytes_in"] - redis_before["bytes_in"]) / n),
            "redis_bytes_out": round((redis_after["bytes_out"] - redis_before["bytes_out"]) / n),
            "redis_memory_while_queued_bytes": round(queued_bytes),
            **{f"postgres_{k}": round((pg_after[k] - pg_before[k]) / n, 2) for k in pg_after},
            "cpu_us": drained.cpu_us_per_message,
        },
    }
    write_result("capacity", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000), indent=2))
