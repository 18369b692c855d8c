"""Dispatch: enqueue and drain rates of no-op jobs, this project's stack beside its peers.

Measured one after the other in one run, on the same Redis database, each worker one
process of 8 threads (the full stack also with 2 processes):

- ``dramatiq``: raw Dramatiq, no extra middleware, its default prefetch (2 per thread);
- ``dramatiq_prefetch64``: the same with ``dramatiq_queue_prefetch=64`` (also with 2 processes);
- ``pfd``: this project's whole stack as the Procfile's ``high_priority`` line runs it
  (prefetch 64, job records, a log line per job, the recorder writing every row);
- ``pfd_2_processes``: the same line with ``--processes 2``;
- ``celery``: Celery on Redis, a thread pool of 8, late acks, no per-task log lines.

Each run also accounts the CPU each message cost, by process (worker, recorder, Redis,
PostgreSQL, this driver's polling), from ``/proc``, and so how many cores each stack kept
busy: on a machine of two cores that bounds what a second worker process can add
(``saturated_scaling``).

Run ``python -m bench.bench_dispatch [n]``; figures in ``bench/results/dispatch.json``.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from bench.common import write_result
from bench.processes import BIN, Drain, bench_env, drain, migrate, produce, running

__all__ = ["drain_full_stack", "run"]

QUEUE = "high_priority"
_SEND_DRAMATIQ = """
import json, time
import {module} as m
started = time.perf_counter()
for _ in range({n}):
    m.bench_noop.send()
print(json.dumps({{"rate": {n} / (time.perf_counter() - started)}}))
"""
_SEND_CELERY = """
import json, time
from bench.celery_app import bench_noop
started = time.perf_counter()
for _ in range({n}):
    bench_noop.delay()
print(json.dumps({{"rate": {n} / (time.perf_counter() - started)}}))
"""


def _figures(sent: dict[str, Any], drained: Drain) -> dict[str, Any]:
    return {"enqueue_per_s": round(sent["rate"]), "drain_per_s": round(drained.rate),
            "cpu_us_per_message": drained.cpu_us_per_message}


def _dramatiq(module: str, n: int, env: dict[str, str], redis: Redis, *, processes: int = 1,
              prefetch: int | None = None, recorder: bool = False) -> dict[str, Any]:
    redis.flushdb()
    worker_env = {**env, **({"dramatiq_queue_prefetch": str(prefetch)} if prefetch else {})}
    sent = produce(_SEND_DRAMATIQ.format(module=module, n=n), worker_env)
    msgs = f"dramatiq:{QUEUE}.msgs"
    assert redis.hlen(msgs) == n, "every message must be queued before the worker starts"
    command = [str(BIN / "dramatiq"), module, "--queues", QUEUE, "--processes", str(processes), "--threads", "8"]
    with running(command, worker_env) as worker:
        if recorder:
            with running([str(BIN / "pfd"), "record-jobs"], env, log_name="recorder") as job_recorder:
                groups = {"worker": worker.pid, "recorder": job_recorder.pid}
                drained = drain(lambda: redis.hlen(msgs), n, worker, groups=groups)
        else:
            drained = drain(lambda: redis.hlen(msgs), n, worker)
    return _figures(sent, drained)


def drain_full_stack(n: int, env: dict[str, str], redis: Redis) -> dict[str, Any]:
    """Enqueue and drain rates of the full stack's ``high_priority`` line on ``n`` queued messages."""
    return _dramatiq("bench.noop_full", n, env, redis, prefetch=64, recorder=True)


def _celery(n: int, env: dict[str, str], redis: Redis) -> dict[str, Any]:
    from bench.celery_app import QUEUE as CELERY_QUEUE

    redis.flushdb()
    sent = produce(_SEND_CELERY.format(n=n), env)
    command = [str(BIN / "celery"), "-A", "bench.celery_app", "worker", "--pool", "threads", "-c", "8",
               "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", CELERY_QUEUE]
    with running(command, env, log_name="celery") as worker:
        drained = drain(lambda: redis.llen(CELERY_QUEUE) + redis.hlen("unacked"), n, worker)
    return _figures(sent, drained)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (CPU costs component by component)."""
    cpu = {name: round(statistics.median(r["cpu_us_per_message"][name] for r in runs), 1)
           for name in runs[0]["cpu_us_per_message"]}
    rates = {key: round(statistics.median(r[key] for r in runs)) for key in ("enqueue_per_s", "drain_per_s")}
    return {**rates, "cpu_us_per_message": cpu}


def saturated_scaling(one: dict[str, Any], two: dict[str, Any], cores: int) -> float:
    """What two worker processes would scale one to if they kept every core busy.

    At the CPU per message the two-process run measured (every process: workers,
    recorder, Redis, the driver's polling), ``cores`` busy cores drain at most
    ``cores / cost`` messages a second; one process, bound by the GIL, drained ``one``.
    """
    cost_s = sum(two["cpu_us_per_message"].values()) / 1e6
    return round(cores / cost_s / one["drain_per_s"], 3)


def cores_busy(stack: dict[str, Any]) -> float:
    """Cores a stack kept busy while it drained: CPU per message times messages per second."""
    return round(sum(stack["cpu_us_per_message"].values()) * stack["drain_per_s"] / 1e6, 2)


def run(n: int = 20_000, rounds: int = 3, redis_url: str = "redis://127.0.0.1:6379/12") -> dict[str, Any]:
    """Measure every stack on ``n`` no-op messages, ``rounds`` times interleaved; write the medians.

    Rates on this shared 2-core machine move by a third from run to run, so every stack runs
    once per round and the figures are each stack's median over the rounds.
    """
    env = bench_env(redis_url)
    migrate(env)
    redis = Redis.from_url(redis_url)
    stacks: dict[str, Callable[[], dict[str, Any]]] = {
        "dramatiq": lambda: _dramatiq("bench.noop_raw", n, env, redis),
        "dramatiq_prefetch64": lambda: _dramatiq("bench.noop_raw", n, env, redis, prefetch=64),
        "dramatiq_prefetch64_2_processes": lambda: _dramatiq("bench.noop_raw", n, env, redis, processes=2, prefetch=64),
        "pfd": lambda: drain_full_stack(n, env, redis),
        "pfd_2_processes": lambda: _dramatiq("bench.noop_full", n, env, redis, processes=2, prefetch=64, recorder=True),
        "celery": lambda: _celery(n, env, redis),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in stacks}
    for _ in range(rounds):
        for name, measure in stacks.items():
            runs[name].append(measure())
    redis.flushdb()
    medians = {name: _median(rs) for name, rs in runs.items()}
    pfd, tuned, celery = (medians[k]["drain_per_s"] for k in ("pfd", "dramatiq_prefetch64", "celery"))
    cores = os.cpu_count() or 1
    ratios = {
        "pfd_over_tuned_dramatiq": round(pfd / tuned, 3),
        "pfd_over_celery": round(pfd / celery, 3),
        "pfd_2_over_1_process": round(medians["pfd_2_processes"]["drain_per_s"] / pfd, 3),
        # For context: the same scaling of raw Dramatiq, which runs no recorder and writes no log lines.
        "dramatiq_2_over_1_process": round(medians["dramatiq_prefetch64_2_processes"]["drain_per_s"] / tuned, 3),
        # How far the 2-process runs are from what this machine's cores allow at their cost.
        "pfd_2_over_1_process_if_cores_saturated": saturated_scaling(
            medians["pfd"], medians["pfd_2_processes"], cores),
        "dramatiq_2_over_1_process_if_cores_saturated": saturated_scaling(
            medians["dramatiq_prefetch64"], medians["dramatiq_prefetch64_2_processes"], cores),
    }
    busy = {name: cores_busy(stack) for name, stack in medians.items()}
    goals = {"pfd_over_tuned_dramatiq": 0.5, "pfd_over_celery": 2.0, "pfd_2_over_1_process": 1.6}
    figures = {
        "messages": n, "threads": 8, "rounds": rounds, "stacks": medians, "cores_busy": busy, "runs": runs,
        "ratios": ratios,
        "goals": goals, "meets_goals": {name: ratios[name] >= goal for name, goal in goals.items()},
    }
    write_result("dispatch", figures)
    return figures


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
