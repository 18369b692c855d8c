"""How cost grows: dispatch with 1k, 10k and 100k messages queued; generation and feature
extraction against dataset size.

The full stack's ``high_priority`` line drains backlogs of each size (enqueue and drain
rates); the generator writes datasets of 5, 20 and 80 records per class with every core;
the vectorised extraction of the 36 features runs over the windows of 1, 4 and 16 records
per class. Each size's time over the smallest's, against its size over the smallest's,
says whether the cost grows linearly (an exponent of 1 on a log-log fit) or worse.
Run ``python -m bench.bench_scaling``; figures in ``bench/results/scaling.json``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from redis import Redis

from bench.bench_dispatch import drain_full_stack
from bench.bench_features import make_windows
from bench.common import write_result
from bench.processes import bench_env, migrate

__all__ = ["run"]


def _exponent(sizes: list[float], seconds: list[float]) -> float:
    """The slope of log(time) over log(size): 1 is linear."""
    return round(float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]), 3)


def _dispatch(backlogs: tuple[int, ...], redis_url: str) -> dict[str, Any]:
    env = bench_env(redis_url)
    migrate(env)
    redis = Redis.from_url(redis_url)
    rows = {str(n): drain_full_stack(n, env, redis) for n in backlogs}
    redis.flushdb()
    drains = [rows[str(n)]["drain_per_s"] for n in backlogs]
    return {"backlogs": rows, "drain_largest_over_smallest": round(drains[-1] / drains[0], 3)}


def _generation(records_per_class: tuple[int, ...]) -> dict[str, Any]:
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals import GeneratorConfig

    rows, seconds = {}, []
    for n in records_per_class:
        with tempfile.TemporaryDirectory(prefix="pfd-bench-scaling-") as folder:
            started = time.perf_counter()
            made = generate_dataset(GeneratorConfig(records_per_class=n, seed=1), Path(folder), f"scale-{n}")
            elapsed = time.perf_counter() - started
        seconds.append(elapsed)
        rows[str(made.n_records)] = {"seconds": round(elapsed, 2), "records_per_s": round(made.n_records / elapsed, 1)}
    sizes = [11 * n for n in records_per_class]
    return {"by_records": rows, "exponent": _exponent(sizes, seconds)}


def _features(records_per_class: tuple[int, ...]) -> dict[str, Any]:
    from pipeline.features import extract_features

    rows, seconds, sizes = {}, [], []
    for n in records_per_class:
        windows, _ = make_windows(records_per_class=n, seed=2)
        extract_features(windows[:5])  # imports and caches outside the timing
        started = time.perf_counter()
        extract_features(windows)
        elapsed = time.perf_counter() - started
        seconds.append(elapsed)
        sizes.append(len(windows))
        rows[str(len(windows))] = {"seconds": round(elapsed, 2), "windows_per_s": round(len(windows) / elapsed, 1)}
    return {"by_windows": rows, "exponent": _exponent(sizes, seconds)}


def run(redis_url: str = "redis://127.0.0.1:6379/12", *, quick: bool = False) -> dict[str, Any]:
    """Measure all three; write ``bench/results/scaling.json`` (``quick``: small sizes, a check only)."""
    figures = {
        "dispatch": _dispatch((100, 1_000, 2_000) if quick else (1_000, 10_000, 100_000), redis_url),
        "generation": _generation((1, 2, 4) if quick else (5, 20, 80)),
        "features": _features((1, 2, 4) if quick else (1, 4, 16)),
    }
    write_result("scaling", figures)
    return figures


if __name__ == "__main__":
    print(run())
