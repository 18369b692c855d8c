"""What open dashboards cost the workers: drain rate with and without 50 live event streams.

The full stack's ``high_priority`` line (job records, the recorder) drains ``n`` no-op
messages, alone and while a ``pfd dashboard`` process serves 50 server-sent event streams,
each following a job that stays live (queued on ``gpu_training``, which no worker here
consumes), so every stream polls its tree four times a second for the whole drain. Rounds
interleave the two modes (this shared 2-core machine moves rates by a third between runs)
and each figure is the median. The dashboard's CPU competes with the worker's on this one
machine: the overhead measured is what a dashboard on a worker host costs.
Run ``python -m bench.bench_dashboard``; figures in ``bench/results/dashboard.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from redis import Redis

from bench.common import write_result
from bench.processes import BIN, bench_env, drain, migrate, own_redis, produce, running, wait_for
from tests.servers import free_port

__all__ = ["run"]

_TOKEN = "bench-dashboard-token-0123456789abcdef"
_SEND = """
import json
import dramatiq
import bench.noop_full as m
for _ in range({n}):
    m.bench_noop.send()
followed = []
for _ in range({streams}):
    message = m.bench_noop.message().copy(queue_name="gpu_training")
    dramatiq.get_broker().enqueue(message)
    followed.append(message.message_id)
print(json.dumps({{"followed": followed}}))
"""


def _follow(url: str, stop: threading.Event, opened: list[str], failures: list[str]) -> None:
    """Hold one event stream open until ``stop``; note when its first event came."""
    try:
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {_TOKEN}"}, timeout=None) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: ") and url not in opened:
                    opened.append(url)
                if stop.is_set():
                    return
    except httpx.HTTPError as exc:
        failures.append(f"{url}: {exc}")


def _drain(n: int, env: dict[str, str], redis: Redis, dashboard: str | None, streams: int) -> float:
    redis.flushdb()
    sent = produce(_SEND.format(n=n, streams=streams), {**env, "dramatiq_queue_prefetch": "64"})
    msgs = "dramatiq:high_priority.msgs"
    stop, opened, failures, threads = threading.Event(), [], [], []
    if dashboard:
        for message_id in sent["followed"]:
            thread = threading.Thread(target=_follow, args=(f"{dashboard}/api/jobs/{message_id}/events", stop,
                                                            opened, failures), daemon=True)
            thread.start()
            threads.append(thread)
        wait_for(lambda: len(opened) == streams or bool(failures), timeout=60, what="every stream's first event")
        assert not failures, failures
    command = [str(BIN / "dramatiq"), "bench.noop_full", "--queues", "high_priority", "--processes", "1",
               "--threads", "8"]
    try:
        with running(command, {**env, "dramatiq_queue_prefetch": "64"}) as worker:
            with running([str(BIN / "pfd"), "record-jobs"], env, log_name="recorder") as recorder:
                drained = drain(lambda: redis.hlen(msgs), n, worker,
                                groups={"worker": worker.pid, "recorder": recorder.pid})
    finally:
        stop.set()
    return drained.rate


def run(n: int = 5_000, streams: int = 50, rounds: int = 3) -> dict[str, Any]:
    """Drain ``n`` messages alone and with ``streams`` open streams, ``rounds`` times; write the medians."""
    from actors.web.auth import token_digest

    with own_redis() as redis_url:
        tokens = {token_digest(_TOKEN): {"name": "bench", "role": "viewer"}}
        env = bench_env(redis_url, PFD_DASHBOARD_TOKENS=json.dumps(tokens))
        migrate(env)
        redis = Redis.from_url(redis_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        alone, watched = [], []
        with running([str(BIN / "pfd"), "dashboard", "--port", str(port)], env, log_name="dashboard"):
            wait_for(lambda: _answers(url), timeout=60, what="the dashboard", interval=0.2)
            for _ in range(rounds):
                alone.append(_drain(n, env, redis, None, streams))
                watched.append(_drain(n, env, redis, url, streams))
    figures = {
        "messages": n, "streams": streams, "rounds": rounds,
        "drain_per_s_alone": round(statistics.median(alone)), "drain_per_s_watched": round(statistics.median(watched)),
        "runs_alone": [round(r) for r in alone], "runs_watched": [round(r) for r in watched],
    }
    figures["overhead_percent"] = round(100 * (1 - figures["drain_per_s_watched"] / figures["drain_per_s_alone"]), 1)
    write_result("dashboard", figures)
    return figures


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
