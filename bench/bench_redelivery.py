"""Kill to restart: how soon a killed worker's job starts again on a worker waiting on its queue.

A long job runs on a ``cpu_processing`` worker (the Procfile line as one process: one
thread, prefetch 1) while a second worker waits on the queue; the first is killed
(SIGKILL to its process group) and the time until the job's body starts on the second is
measured. The second becomes the next victim and a fresh worker waits, ``kills`` times. The
Procfile's ``high_priority`` worker runs throughout, as on a deployment's control host.
Settings are the defaults (heartbeat timeout 15 s), SQLite in a temporary folder, a
``redis-server`` of the benchmark's own.

``python -m bench.bench_redelivery [--kills N] [--baseline DIR]``: ``--baseline`` also runs
the workers and the producer from another checkout (one from before the sweep, say), for a
comparison on the same machine. Figures in ``bench/results/redelivery.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from bench.common import write_result
from bench.processes import (
    ROOT,
    bench_env,
    migrate,
    own_redis,
    procfile,
    produce,
    running,
    wait_for,
)

__all__ = ["run"]

JOB_S = 50  # longer than any round: every run of the job ends in a kill
_SEND = """
import json
import actors.app
from tests.probe_actors import durable_work
print(json.dumps({{"id": durable_work.send(key={key!r}, seconds={seconds}).message_id}}))
"""


def _new_worker_key(redis: Redis, known: set[bytes]) -> bytes | None:
    """The heartbeat key of a worker process that was not there before, once it beats."""
    return next((k for k in redis.scan_iter("pfd:worker:*") if k not in known), None)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _measure(kills: int, code: Path) -> dict[str, Any]:
    """Kill the worker running a job ``kills`` times, with workers from checkout ``code``."""
    with own_redis() as redis_url:
        return _kill_and_time(kills, code, redis_url)


def _kill_and_time(kills: int, code: Path, redis_url: str) -> dict[str, Any]:
    # The kills are the benchmark's, not the job's: the crash guard would refuse its 4th start.
    env = bench_env(redis_url, PYTHONPATH=str(code), PFD_CPU_PROCESSES="1", PFD_CRASH_GUARD_MAX_STARTS="1000")
    redis = Redis.from_url(redis_url)
    migrate(env, cwd=code)
    command = procfile("cpu_processing", extra_modules=("tests.probe_actors",), root=code)
    key = f"bench:redelivery:{uuid.uuid4().hex}"
    samples: list[float] = []
    with ExitStack() as stack:
        def start_worker(name: str, line: str = command):  # type: ignore[no-untyped-def]
            known = set(redis.scan_iter("pfd:worker:*"))
            worker = stack.enter_context(running(line, env, log_name=f"redelivery-{name}", cwd=code))
            # Killed on the way out, before its Redis stops: a graceful stop would wait for
            # the job, and then for a Redis that is gone, long after ``running`` has returned.
            stack.callback(_kill_group, worker.pid)
            wait_for(lambda: _new_worker_key(redis, known) is not None, timeout=120, interval=0.05,
                     what=f"worker {name} to boot")
            return worker

        start_worker("control", procfile("high_priority", root=code))
        victim = start_worker("0")
        message_id = produce(_SEND.format(key=key, seconds=JOB_S), env, cwd=code)["id"]

        def starts() -> int:
            return int(redis.hget(f"{key}:starts", message_id) or 0)

        wait_for(lambda: starts() == 1, timeout=120, what="the job's first start")
        for n in range(1, kills + 1):
            waiting = start_worker(str(n))
            os.killpg(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda n=n: starts() == n + 1, timeout=600, interval=0.01, what=f"restart {n}")
            samples.append(round(time.monotonic() - killed_at, 2))
            print(f"{code.name}: kill {n} restarted after {samples[-1]} s", flush=True)
            victim = waiting
    settings = produce("import json\nfrom config.settings import get_settings\n"
                       "print(get_settings().model_dump_json())", env, cwd=code)
    return {
        "heartbeat_timeout_s": settings["broker_heartbeat_timeout_ms"] / 1000,
        "sweep_interval_s": settings.get("broker_sweep_interval_s"),
        "maintenance_chance": settings.get("broker_maintenance_chance"),
        "kill_to_restart_s": samples,
        "min_s": min(samples), "median_s": statistics.median(samples), "max_s": max(samples),
    }


def run(kills: int = 5, baseline: Path | None = None) -> dict[str, Any]:
    """Measure kill-to-restart times with this checkout (and ``baseline``'s); write and return them.

    Each measurement has a ``redis-server`` of its own: no other run's workers or ``flushdb``
    can touch its messages and heartbeats.
    """
    figures: dict[str, Any] = {"kills": kills, **_measure(kills, ROOT)}
    if baseline is not None:
        figures["baseline"] = {"code": str(baseline), **_measure(kills, baseline)}
    write_result("redelivery", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redelivery")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure the same way")
    arguments = parser.parse_args()
    print(run(kills=arguments.kills, baseline=arguments.baseline and arguments.baseline.resolve()))
