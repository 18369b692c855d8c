"""Load: 10,000 short jobs across the four queues, through real workers, on a Redis of its own.

After the result TTL, Redis is back to what it held before the load (results, progress,
job caches all expire) and the database holds exactly one final row per job.
"""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from actors.store.db import get_database, migrate
from actors.store.jobs import JobStore
from actors.store.models import FINAL_JOB_STATES, Job
from config.queues import QUEUES
from tests.conftest import WORKER_LINES, drop_pg_database, recreate_pg_database
from tests.servers import RedisServer, send_messages
from tests.waiting import wait_until
from tests.workers import Workers

pytestmark = pytest.mark.slow

JOBS = int(os.environ.get("PFD_TEST_LOAD_JOBS", "10000"))
TTL_S = 5


def _expiring_keys(client) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Keys that will expire, but for the workers' heartbeats (refreshed while they live)."""
    return [key for key in client.scan_iter(count=1000)
            if client.ttl(key) >= 0 and not key.startswith(b"pfd:worker:")]


def test_ten_thousand_short_jobs_all_complete_and_leave_nothing_behind(app, tmp_path, reliability):
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    db_name = f"pfd_load_{os.getpid()}"
    db_url = recreate_pg_database(db_name)
    migrate(db_url)
    database = get_database(db_url)
    env = {"PFD_REDIS_URL": server.url(), "PFD_DATABASE_URL": db_url,
           "PFD_RESULT_TTL_S": str(TTL_S), "PFD_JOB_CACHE_TTL_S": str(TTL_S), "PFD_LOG_LEVEL": "WARNING"}
    running = Workers(tmp_path, extra_env=env)
    client = server.client()
    try:
        for name in WORKER_LINES:
            running.start(name)
        store = JobStore(client, database, cache_ttl_s=TTL_S)
        ready = send_messages([{"actor": f"probe_{queue}"} for queue in QUEUES], env)
        wait_until(lambda: all(store.get(m).state == "succeeded" for m in ready), timeout=90, what="the four workers")
        # The baseline: workers connected, nothing left from the readiness probes.
        wait_until(lambda: not _expiring_keys(client), timeout=TTL_S * 6, what="the probes' keys to expire")
        baseline_keys = {key for key in client.scan_iter(count=1000)}
        baseline_bytes = int(client.info("memory")["used_memory"])

        started = time.monotonic()
        sent = send_messages([{"actor": f"probe_{QUEUES[n % len(QUEUES)]}"} for n in range(JOBS)], env)
        sent_s = time.monotonic() - started

        def final_rows() -> int:
            with database.session() as session:
                return session.scalar(select(func.count()).select_from(Job).where(
                    Job.state.in_(FINAL_JOB_STATES), Job.message_id.in_(sent)))

        wait_until(lambda: final_rows() == JOBS, timeout=600, interval=1.0, what=f"{JOBS} final job rows")
        done_s = time.monotonic() - started
        with database.session() as session:
            states = dict(session.execute(select(Job.state, func.count()).where(
                Job.message_id.in_(sent)).group_by(Job.state)).all())
        assert states == {"succeeded": JOBS}
        peak_keys = client.dbsize()

        # Everything the load added expires: results, progress, job hashes.
        wait_until(lambda: {key for key in client.scan_iter(count=1000)} <= baseline_keys,
                   timeout=TTL_S * 12, what="the load's keys to expire")
        after_bytes = int(client.info("memory")["used_memory"])
        assert after_bytes <= baseline_bytes + 512 * 1024, (baseline_bytes, after_bytes)
        reliability.record(
            "load_10k",
            fault=f"{JOBS} short jobs across the four queues, result and job-cache TTL {TTL_S} s",
            outcome="all succeeded; one final job row each; Redis back to its baseline after the TTL",
            jobs=JOBS, send_s=round(sent_s, 1), all_recorded_s=round(done_s, 1),
            jobs_per_s=round(JOBS / done_s, 1), redis_keys_at_peak=peak_keys,
            redis_used_memory_baseline=baseline_bytes, redis_used_memory_after_ttl=after_bytes,
        )
    finally:
        running.stop_all()
        server.stop()
        database.dispose()
        drop_pg_database(db_name)
