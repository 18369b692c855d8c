"""Round-trip latency of a high-priority job: send, run, read its result.

In one run, on the same Redis, each worker one process of 8 threads:

- ``pfd``: the Procfile's ``high_priority`` line (and the recorder), idle, after quiet
  spells, and while the ``gpu_training`` and ``cpu_processing`` lines are saturated with
  heavy jobs and have a backlog of more;
- ``dramatiq``: raw Dramatiq with its own polling consumer, idle and after quiet spells;
- ``celery``: Celery on Redis, a thread pool of 8, idle and after quiet spells;
- ``redis_ping``: the control, a bare Redis PING from the same driver, idle and under the
  same load: what the machine itself adds to a round trip's tail;
- ``placements``: the ``pfd`` stack idle and loaded again under each CPU placement of
  ``PLACEMENTS`` (``actors.platform.placement``), with the heavy queues' throughput (rounds of
  matrix products per second) measured in the same batches: what the urgent tail gains and
  what the heavy work pays for it.

Run ``python -m bench.bench_latency``; figures in ``bench/results/latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from actors.platform.placement import parse_cpu_list
from bench.common import write_result
from bench.processes import BIN, bench_env, migrate, procfile, produce, running, wait_for
from config.settings import get_settings

__all__ = ["run"]

EXTRA = ("bench.latency_actors",)
_ROUND_TRIPS = """
import json, time
{setup}
def once():
    started = time.perf_counter()
    {call}
    return (time.perf_counter() - started) * 1000
for _ in range(20):  # warm-up: connections, imports
    once()
busy = [once() for _ in range({n})]
quiet = []
for _ in range({quiet}):
    time.sleep({quiet_s})  # the quiet spell being measured, not a wait for anything
    quiet.append(once())
print(json.dumps({{"busy": busy, "quiet": quiet}}))
"""
STACKS = {
    "pfd": ("from bench.latency_actors import bench_echo",
            "bench_echo.send().get_result(block=True, timeout=10_000)"),
    "dramatiq": ("from bench.echo_raw import bench_echo",
                 "bench_echo.send().get_result(block=True, timeout=10_000)"),
    "celery": ("from bench.celery_app import bench_echo", "bench_echo.delay().get(timeout=10)"),
}
# The control: one bare Redis round trip, no worker, idle and under the same load. Its tail
# under load is what the machine adds to any round trip, whatever runs on it.
PING = ("import os\nfrom redis import Redis\nredis = Redis.from_url(os.environ['PFD_REDIS_URL'])", "redis.ping()")
CALLS = {**STACKS, "redis_ping": PING}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2)}


def _measure(stack: str, env: dict[str, str], n: int, quiet: int, quiet_s: float) -> dict[str, Any]:
    setup, call = CALLS[stack]
    samples = produce(_ROUND_TRIPS.format(setup=setup, call=call, n=n, quiet=quiet, quiet_s=quiet_s), env)
    return {"idle": _summary(samples["busy"]), **({"after_quiet": _summary(samples["quiet"])} if quiet else {})}


def _worker_command(stack: str) -> str | list[str]:
    if stack == "pfd":
        return procfile("high_priority", extra_modules=EXTRA)
    if stack == "dramatiq":
        return [str(BIN / "dramatiq"), "bench.echo_raw", "--queues", "high_priority", "--processes", "1", "--threads", "8"]
    return [str(BIN / "celery"), "-A", "bench.celery_app", "worker", "--pool", "threads", "-c", "8", "-l", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", "bench"]


def _ready(stack: str, env: dict[str, str]) -> None:
    setup, call = STACKS[stack]
    produce(f"import json\n{setup}\n{call}\nprint(json.dumps({{}}))", env)


def _cpu_busy() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)  # (idle + iowait, total)


def _burn_rounds(redis: Redis, message_ids: list[str]) -> int:
    """Rounds of heavy work done so far by the burn jobs (each reports its count as its status)."""
    statuses = [redis.hget(f"pfd:job:{i}", "status") or b"" for i in message_ids]
    return sum(int(s.split()[1]) for s in statuses if s.startswith(b"burning: "))


def _loaded(env: dict[str, str], n: int, rounds: int, burn_s: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rounds`` batches of round trips while gpu_training and cpu_processing run heavy jobs with more queued.

    Returns the full stack's batches (with the heavy queues' rounds per second during each)
    and the bare Redis pings' (``PING``), one after each.
    """
    # As many cpu_processing processes as the placement leaves CPUs (the Procfile's default).
    heavy_env = {key: value for key, value in env.items() if key != "PFD_CPU_PROCESSES"}
    with running(procfile("gpu_training", extra_modules=EXTRA), heavy_env, log_name="gpu"), \
         running(procfile("cpu_processing", extra_modules=EXTRA), heavy_env, log_name="cpu"):
        burns = produce(f"""
import json
from bench.latency_actors import bench_burn_cpu, bench_burn_gpu
ids = [bench_burn_gpu.send(seconds={burn_s}).message_id for _ in range(4)]
ids += [bench_burn_cpu.send(seconds={burn_s}).message_id for _ in range(8)]
print(json.dumps(ids))
""", env)
        redis = Redis.from_url(env["PFD_REDIS_URL"])
        running_jobs = lambda: sum(redis.hget(f"pfd:job:{i}", "state") == b"running" for i in burns)  # noqa: E731
        heavy_cpus = len(os.sched_getaffinity(0) - parse_cpu_list(env.get("PFD_URGENT_CPUS", "")))
        wait_for(lambda: running_jobs() >= 1 + heavy_cpus, timeout=120, what="the heavy jobs to start",
                 interval=0.1)
        batches, pings = [], []
        for _ in range(rounds):
            idle_before, total_before = _cpu_busy()
            burnt_before, started = _burn_rounds(redis, burns), time.monotonic()
            figures = _measure("pfd", env, n, 0, 0)["idle"]
            idle_after, total_after = _cpu_busy()
            figures["cpu_busy_share"] = round(1 - (idle_after - idle_before) / (total_after - total_before), 3)
            figures["heavy_jobs_running"] = running_jobs()
            figures["heavy_rounds_per_s"] = round((_burn_rounds(redis, burns) - burnt_before)
                                                  / (time.monotonic() - started), 2)
            batches.append(figures)
            pings.append(_measure("redis_ping", env, n, 0, 0)["idle"])
        produce(f"""
import json
from actors.platform.jobs import request_cancel
for message_id in {burns!r}:
    request_cancel(message_id)
print(json.dumps({{}}))
""", env)
    return batches, pings


def _median_of(batches: list[dict[str, Any]]) -> dict[str, float]:
    return {key: round(statistics.median(b[key] for b in batches), 3) for key in batches[0]}


# The options measured beside the settings' defaults (the ``pfd`` stack above): heavy
# workers' niceness and policy, and CPU 0 reserved for the urgent worker (``urgent_cpus``).
PLACEMENTS: dict[str, dict[str, str]] = {
    "none": {"PFD_HEAVY_WORKER_NICE": "0", "PFD_HEAVY_WORKER_POLICY": "other", "PFD_URGENT_CPUS": ""},
    "nice_19": {"PFD_HEAVY_WORKER_NICE": "19", "PFD_HEAVY_WORKER_POLICY": "other", "PFD_URGENT_CPUS": ""},
    "batch_nice_10": {"PFD_HEAVY_WORKER_NICE": "10", "PFD_HEAVY_WORKER_POLICY": "batch", "PFD_URGENT_CPUS": ""},
    "idle": {"PFD_HEAVY_WORKER_NICE": "0", "PFD_HEAVY_WORKER_POLICY": "idle", "PFD_URGENT_CPUS": ""},
    "pinned": {"PFD_HEAVY_WORKER_NICE": "0", "PFD_HEAVY_WORKER_POLICY": "other", "PFD_URGENT_CPUS": "0"},
    "pinned_batch_nice_10": {"PFD_HEAVY_WORKER_NICE": "10", "PFD_HEAVY_WORKER_POLICY": "batch",
                             "PFD_URGENT_CPUS": "0"},
    "pinned_idle": {"PFD_HEAVY_WORKER_NICE": "0", "PFD_HEAVY_WORKER_POLICY": "idle", "PFD_URGENT_CPUS": "0"},
}


def _placement(name: str, env: dict[str, str], n: int, rounds: int, burn_s: float) -> dict[str, Any]:
    """The ``pfd`` stack idle and loaded with every worker placed as option ``name`` says."""
    placed = {**env, **PLACEMENTS[name]}
    with running(_worker_command("pfd"), placed, log_name=f"pfd-{name}"), \
         running([str(BIN / "pfd"), "record-jobs"], placed, log_name="recorder"):
        _ready("pfd", placed)
        idle = [_measure("pfd", placed, n, 0, 0)["idle"] for _ in range(rounds)]
        loaded, pings = _loaded(placed, n, rounds, burn_s)
    figures = {"settings": PLACEMENTS[name], "idle": _median_of(idle), "under_load": _median_of(loaded),
               "redis_ping_under_load": _median_of(pings), "under_load_batches": loaded}
    figures["loaded_p99_over_idle_p99"] = round(figures["under_load"]["p99_ms"] / figures["idle"]["p99_ms"], 3)
    return figures


def run(n: int = 2000, rounds: int = 3, quiet: int = 20, quiet_s: float = 2.0,
        redis_url: str = "redis://127.0.0.1:6379/12", placements: tuple[str, ...] = tuple(PLACEMENTS),
        burn_s: float = 120) -> dict[str, Any]:
    """Measure every stack, then the ``pfd`` stack under each of ``placements``; write
    ``bench/results/latency.json``.

    Tail latency on this shared 2-core machine moves from run to run, so the full stack's
    idle and loaded figures are each the median of ``rounds`` batches of ``n`` round trips.
    """
    env = bench_env(redis_url)
    migrate(env)
    Redis.from_url(redis_url).flushdb()
    idle_pings = [_measure("redis_ping", env, n, 0, 0)["idle"] for _ in range(rounds)]
    stacks: dict[str, Any] = {}
    for stack in STACKS:
        with ExitStack() as processes:
            processes.enter_context(running(_worker_command(stack), env, log_name=stack))
            if stack == "pfd":
                processes.enter_context(running([str(BIN / "pfd"), "record-jobs"], env, log_name="recorder"))
            _ready(stack, env)
            stacks[stack] = _measure(stack, env, n, quiet, quiet_s)
            if stack == "pfd":
                idle = [stacks[stack]["idle"]] + [_measure(stack, env, n, 0, 0)["idle"] for _ in range(rounds - 1)]
                loaded, loaded_pings = _loaded(env, n, rounds, burn_s=burn_s)
                stacks[stack].update(idle=_median_of(idle), idle_batches=idle,
                                     under_load=_median_of(loaded), under_load_batches=loaded)
                stacks["redis_ping"] = {"idle": _median_of(idle_pings), "under_load": _median_of(loaded_pings)}
    placed = {name: _placement(name, env, n, rounds, burn_s) for name in placements}
    Redis.from_url(redis_url).flushdb()
    pfd = stacks["pfd"]
    ratios = {
        "loaded_p99_over_idle_p99": round(pfd["under_load"]["p99_ms"] / pfd["idle"]["p99_ms"], 3),
        "pfd_p50_over_celery_p50": round(pfd["idle"]["p50_ms"] / stacks["celery"]["idle"]["p50_ms"], 3),
        "first_after_quiet_max_ms": pfd["after_quiet"]["max_ms"],
        # For context: the same ratio of a bare Redis round trip on the same machine.
        "redis_ping_loaded_p99_over_idle_p99": round(
            stacks["redis_ping"]["under_load"]["p99_ms"] / stacks["redis_ping"]["idle"]["p99_ms"], 3),
    }
    goals = {"loaded_p99_over_idle_p99": 1.5, "pfd_p50_over_celery_p50": 1.0, "first_after_quiet_max_ms": 100}
    figures = {"round_trips": n, "rounds": rounds, "quiet_spells": quiet, "quiet_s": quiet_s,
               "default_placement": {"heavy_worker_nice": get_settings().heavy_worker_nice,
                                     "heavy_worker_policy": get_settings().heavy_worker_policy,
                                     "urgent_cpus": get_settings().urgent_cpus},
               "stacks": stacks, "placements": placed, "ratios": ratios, "goals": goals,
               "meets_goals": {k: ratios[k] <= goal for k, goal in goals.items()}}
    write_result("latency", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_latency")
    parser.add_argument("--n", type=int, default=2000, help="round trips per batch")
    parser.add_argument("--rounds", type=int, default=3, help="batches per figure (the median is reported)")
    parser.add_argument("--placements", default=",".join(PLACEMENTS),
                        help=f"CPU placements to compare, comma-separated, from {', '.join(PLACEMENTS)}")
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.n, arguments.rounds, placements=tuple(filter(None, arguments.placements.split(",")))),
                     indent=2))
