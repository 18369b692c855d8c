"""Outages of the services under the workers: Redis restarted, PostgreSQL unreachable.

Each test owns the server it takes away (a ``redis-server`` on a free port, or a TCP proxy
in front of PostgreSQL), starts its own workers against it, and sends through a producer
process of its own, so the shared services and the session's workers are never touched.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from actors.store.db import get_database
from actors.store.jobs import JobStore
from actors.store.models import Job
from actors.store.notifications import InboxItem
from tests.servers import RedisServer, TcpProxy, send_messages
from tests.waiting import wait_until
from tests.workers import Workers

pytestmark = pytest.mark.slow


def _work(key: str, seconds: float, delay: int | None = None) -> dict:
    return {"actor": "durable_work", "kwargs": {"key": key, "seconds": seconds}, "delay": delay}


def test_redis_restart_mid_stream_loses_no_message_with_append_only_persistence(app, pg_url, tmp_path, reliability):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {"PFD_REDIS_URL": server.url()}
    running = Workers(tmp_path, extra_env=env)
    try:
        running.start("cpu_processing", command=running.cpu_command(threads=2))
        running.start("recorder")
        client = server.client()
        store = JobStore(client, get_database(pg_url), cache_ttl_s=3600)
        key = f"test:{uuid.uuid4().hex}"
        before = send_messages([_work(key, 1.0) for _ in range(8)], env)
        delayed = send_messages([_work(key, 0.0, delay=6_000) for _ in range(3)], env)
        wait_until(lambda: client.hlen(f"{key}:starts") >= 2, timeout=60, what="the stream to be under way")

        server.stop()
        down_at = time.monotonic()
        # Down until the worker has noticed: its delay-queue consumer polls every 100 ms.
        wait_until(lambda: "broker.redis_unreachable" in running.log("cpu_processing"), timeout=30,
                   what="the worker to notice the outage")
        server.start()
        down_s = time.monotonic() - down_at
        after = send_messages([_work(key, 0.0) for _ in range(3)], env)

        sent = before + delayed + after
        wait_until(lambda: all(store.get(m).state == "succeeded" for m in sent), timeout=120,
                   what="every message to succeed after the restart")
        recovered_s = time.monotonic() - down_at
        done = {k.decode(): int(v) for k, v in client.hgetall(f"{key}:done").items()}
        assert sorted(done) == sorted(sent)  # 0 lost, delayed ones included
        log = running.log("cpu_processing")
        assert "broker.redis_back" in log and "Consumer encountered" not in log
        reliability.record(
            "redis_restart_append_only",
            fault="Redis stopped (SIGTERM) and started again mid-stream, appendonly yes",
            outcome="workers reconnected by themselves; all messages sent before, during and after ran",
            messages=len(sent), lost=len(sent) - len(done), done_twice=sum(1 for v in done.values() if v > 1),
            redis_down_s=round(down_s, 2), all_done_after_s=round(recovered_s, 2),
        )
    finally:
        running.stop_all()
        server.stop()


def _nap(seconds: float) -> dict:
    return {"actor": "nap", "kwargs": {"seconds": seconds}}


def test_a_job_that_starts_during_a_redis_outage_is_counted_and_recorded_once_redis_is_back(app, pg_url, tmp_path):
    """Given a worker of two threads running two jobs with a third fetched behind them, when
    Redis goes away and the second job ends (its ack waits with the first's sender), the third
    starts during the outage: it must wait for Redis before it runs, and its start, worker and
    attempt must reach its record."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {"PFD_REDIS_URL": server.url()}
    running = Workers(tmp_path, extra_env=env)
    database = get_database(pg_url)
    try:
        running.start("cpu_processing", command=running.cpu_command(threads=2))
        running.start("recorder")
        client = server.client()
        store = JobStore(client, database, cache_ttl_s=3600)
        first, second, third = sent = send_messages([_nap(3.0), _nap(4.0), _nap(0.5)], env)
        wait_until(lambda: store.get(first).state == store.get(second).state == "running"
                   and client.llen("dramatiq:cpu_processing") == 0, timeout=60,
                   what="two jobs running and the third fetched behind them")

        server.stop()
        # The third job's thread is free once the second job ends; whatever happens to it
        # next is logged under its message id (waiting for Redis, or running).
        wait_until(lambda: third in running.log("cpu_processing"), timeout=30,
                   what="the third job to be taken during the outage")
        # The fault itself: an outage that outlasts the third job (0.5 s) and redis-py's own retries.
        taken_at = time.monotonic()
        wait_until(lambda: time.monotonic() - taken_at > 4, timeout=10, what="the outage to go on for 4 s")
        server.start()

        wait_until(lambda: all(store.get(m).state == "succeeded" for m in sent), timeout=60,
                   what="every job to succeed once Redis is back")
        job = store.get(third)
        assert job.attempts == 1 and job.started_at is not None and job.worker
        # Its start was counted by the crash guard, as the other two were.
        assert sorted(int(client.get(k)) for k in client.keys("pfd:starts:*")) == [1, 1, 1]
        assert "Unexpected failure in before_process_message" not in running.log("cpu_processing")

        def row() -> Job | None:
            with database.session() as session:
                found = session.get(Job, third)
                return found if found is not None and found.state == "succeeded" else None

        recorded = wait_until(row, timeout=60, what="the third job's row in PostgreSQL")
        assert (recorded.attempts, recorded.worker) == (1, job.worker) and recorded.started_at is not None
        assert job.deliveries == recorded.deliveries == 1
    finally:
        running.stop_all()
        server.stop()


def _event(n: int) -> dict:
    return {"actor": "notify", "kwargs": {"event": "dataset.generated", "payload": {"dataset_id": f"ds-{n}", "n_records": n}}}


def test_postgresql_unreachable_for_a_while_delays_writes_and_records_nothing_twice(app, pg_url, tmp_path, reliability):
    """Workers and recorder reach PostgreSQL through a proxy the test cuts: every connection
    is reset and new ones are refused, as when the database host goes away."""
    pg_port = urlsplit(pg_url).port or 5432
    proxy = TcpProxy(pg_port).restore()
    db_url = pg_url.replace(f":{pg_port}/", f":{proxy.port}/")
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    env = {"PFD_REDIS_URL": server.url(), "PFD_DATABASE_URL": db_url}
    running = Workers(tmp_path, extra_env=env)
    database = get_database(pg_url)  # the test reads the database directly, never through the proxy
    try:
        running.start("notifications")
        running.start("recorder")
        store = JobStore(server.client(), database, cache_ttl_s=3600)
        warm = send_messages([_event(0)], env)
        wait_until(lambda: store.get(warm[0]).state == "succeeded", timeout=60, what="the notifications worker")

        proxy.cut()
        cut_at = time.monotonic()
        sent = send_messages([_event(n) for n in range(1, 11)], env)
        # Each job met the outage: its database write failed and it waits for its retry.
        wait_until(lambda: all(store.get(m).attempts >= 1 and store.get(m).state == "retrying" for m in sent),
                   timeout=60, what="every job to fail its first attempt on the database")
        wait_until(lambda: "recorder.flush_failed" in running.log("recorder"), timeout=30,
                   what="the recorder to meet the outage")
        proxy.restore()
        down_s = time.monotonic() - cut_at

        def recorded() -> bool:
            with database.session() as session:
                rows = session.scalars(select(Job).where(Job.message_id.in_(sent))).all()
            return len(rows) == len(sent) and all(row.state == "succeeded" for row in rows)

        wait_until(recorded, timeout=120, what="every job recorded as succeeded in PostgreSQL")
        recovered_s = time.monotonic() - cut_at
        with database.session() as session:
            inbox = session.scalar(select(func.count()).select_from(InboxItem).where(
                InboxItem.event_id.in_([f"ev-{m}" for m in sent])))
            attempts = session.scalars(select(Job.attempts).where(Job.message_id.in_(sent))).all()
        assert inbox == len(sent)  # each event's inbox row written once, retries or not
        assert min(attempts) >= 2  # the first attempt met the outage and was retried
        reliability.record(
            "postgresql_unreachable",
            fault="every PostgreSQL connection reset and new ones refused (proxy cut), then restored",
            outcome="job states waited in Redis and the recorder wrote them once back; actors' database "
                    "errors were retried with backoff; each domain row written once",
            jobs=len(sent), inbox_rows=inbox, max_attempts=max(attempts),
            database_down_s=round(down_s, 2), all_recorded_after_s=round(recovered_s, 2),
        )
    finally:
        running.stop_all()
        server.stop()
        proxy.cut()
