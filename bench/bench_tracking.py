"""Job-tracking overhead: drain rate of no-op jobs, full stack over raw Dramatiq.

Both run as a real ``dramatiq`` worker process (1 process, 8 threads) with
``dramatiq_queue_prefetch=64``, on the same Redis, one after the other in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

from bench.common import scratch_dir, write_result

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "high_priority"


def _drain(module: str, n: int, env: dict[str, str], redis: Redis, *, recorder: bool = False) -> tuple[float, float | None]:
    """Enqueue ``n`` messages, start a worker, return (messages/s drained, s until recorded)."""
    redis.flushdb()
    code = (
        f"import {module} as m\n"
        "from dramatiq import get_broker\n"
        f"for _ in range({n}): m.bench_noop.send()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    msgs = f"dramatiq:{QUEUE}.msgs"
    assert redis.hlen(msgs) == n
    log = tempfile.TemporaryFile()
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "dramatiq"), module, "--queues", QUEUE, "--processes", "1", "--threads", "8"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    helpers = []
    if recorder:
        helpers.append(subprocess.Popen([str(Path(sys.executable).parent / "pfd"), "record-jobs"], cwd=ROOT, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    recorded_after = None
    try:
        while redis.hlen(msgs) == n:
            time.sleep(0.005)
        first = time.perf_counter()
        start_left = redis.hlen(msgs)
        while redis.hlen(msgs) > 0:
            time.sleep(0.005)
            if worker.poll() is not None:
                raise RuntimeError(f"{module} worker exited with {worker.returncode}")
        elapsed = time.perf_counter() - first
        if recorder:
            while redis.zcard("pfd:jobs:dirty") + redis.zcard("pfd:jobs:dirty:final") > 0:
                time.sleep(0.01)
            recorded_after = time.perf_counter() - first
    finally:
        for process in (worker, *helpers):
            process.terminate()
            process.wait(30)
        log.close()
    return start_left / elapsed, recorded_after


def run(n: int = 20_000, redis_url: str = "redis://127.0.0.1:6379/12") -> dict[str, Any]:
    """Measure both stacks on ``n`` no-op messages each."""
    var = str(scratch_dir("pfd-bench-tracking-"))
    env = {**os.environ, "PFD_REDIS_URL": redis_url, "PFD_VAR_DIR": var, "PFD_LOG_JSON": "1",
           "dramatiq_queue_prefetch": "64", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-c", "from actors.store.db import migrate; from config.settings import get_settings; migrate(get_settings().database_url)"],
                   cwd=ROOT, env=env, check=True)
    redis = Redis.from_url(redis_url)
    raw, _ = _drain("bench.noop_raw", n, env, redis)
    full, recorded_after = _drain("bench.noop_full", n, env, redis, recorder=True)
    redis.flushdb()
    figures = {
        "messages": n, "prefetch": 64, "threads": 8, "raw_msgs_per_s": round(raw), "full_msgs_per_s": round(full),
        "ratio": round(full / raw, 3), "goal_ratio": 0.5, "database": "SQLite (default)",
        "all_rows_recorded_after_s": round(recorded_after or 0, 2), "drain_s": round(n / full, 2),
    }
    figures["meets_goal"] = figures["ratio"] >= 0.5
    write_result("tracking_overhead", figures)
    return figures
