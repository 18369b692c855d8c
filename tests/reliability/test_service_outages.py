"""Outages of the services under the workers: Redis restarted, PostgreSQL unreachable.

Each test owns the server it takes away (a ``redis-server`` on a free port, or a TCP proxy
in front of PostgreSQL), starts its own workers against it, and sends through a producer
process of its own, so the shared services and the session's workers are never touched.
"""

from __future__ import annotations

import time
import uuid

import pytest

from actors.store.db import get_database
from actors.store.jobs import JobStore
from tests.conftest import wait_until
from tests.servers import RedisServer, send_messages
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
