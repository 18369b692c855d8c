"""PNG charts of the benchmark figures in ``bench/results``, for docs/benchmarks.md (``bench/charts``).

Drawn from whatever results exist; a missing result file skips its chart. Run
``python -m bench.charts`` (``make bench`` runs it last).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.common import RESULTS_DIR

__all__ = ["CHARTS_DIR", "draw_all"]

CHARTS_DIR = Path(__file__).resolve().parent / "charts"
_LABELS = {"dramatiq": "Dramatiq\n(default prefetch)", "dramatiq_prefetch64": "Dramatiq\n(prefetch 64)",
           "dramatiq_prefetch64_2_processes": "Dramatiq\nprefetch 64, 2 proc.", "pfd": "PFD Actors\n(full stack)",
           "pfd_2_processes": "PFD Actors\n2 processes", "celery": "Celery\n(threads, late acks)"}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _save(figure: Figure, name: str) -> Path:
    CHARTS_DIR.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    path = CHARTS_DIR / f"{name}.png"
    figure.savefig(path, dpi=100)
    return path


def _dispatch(result: dict[str, Any]) -> Path:
    stacks = result["stacks"]
    names = [n for n in _LABELS if n in stacks]
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [stacks[n]["enqueue_per_s"] for n in names], 0.4, label="enqueue", color="tab:grey")
    ax.bar([i + 0.2 for i in x], [stacks[n]["drain_per_s"] for n in names], 0.4, label="drain", color="tab:blue")
    ax.set_xticks(list(x), [_LABELS[n] for n in names], fontsize=8)
    ax.set_ylabel("no-op jobs per second")
    ax.set_title(f"Dispatch, {result['messages']:,} no-op jobs, 8 threads a process "
                 f"(median of {result['rounds']} rounds, 2-core machine)", fontsize=10)
    ax.legend()
    return _save(figure, "dispatch")


def _latency(result: dict[str, Any]) -> Path:
    stacks = result["stacks"]
    rows = [("PFD idle", stacks["pfd"]["idle"]), ("PFD after 2 s quiet", stacks["pfd"]["after_quiet"]),
            ("PFD, heavy queues\nsaturated", stacks["pfd"]["under_load"]),
            ("Celery idle", stacks["celery"]["idle"]), ("Celery after\n2 s quiet", stacks["celery"]["after_quiet"]),
            ("Dramatiq idle", stacks["dramatiq"]["idle"]), ("Dramatiq after\n2 s quiet", stacks["dramatiq"]["after_quiet"])]
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["p50_ms"] for _, r in rows], 0.4, label="p50", color="tab:blue")
    ax.bar([i + 0.2 for i in x], [r["p99_ms"] for _, r in rows], 0.4, label="p99", color="tab:orange")
    ax.set_yscale("log")
    ax.set_xticks(list(x), [label for label, _ in rows], fontsize=8)
    ax.set_ylabel("send → result read (ms, log scale)")
    ax.set_title("Round trip of a high-priority job", fontsize=10)
    ax.legend()
    return _save(figure, "latency")


def _memory(result: dict[str, Any]) -> Path:
    kinds = result["kinds"]
    last = next(k for k in next(iter(kinds.values())) if k.startswith("rss_after_") and not k.endswith("_100_kib"))
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    ax = figure.subplots()
    x = range(len(kinds))
    ax.bar([i - 0.2 for i in x], [k["rss_after_100_kib"] / 1024 for k in kinds.values()], 0.4, label="after 100 jobs")
    ax.bar([i + 0.2 for i in x], [k[last] / 1024 for k in kinds.values()], 0.4,
           label=f"after {result['jobs_per_kind']:,} jobs")
    ax.set_xticks(list(x), list(kinds), fontsize=8)
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_title("Worker memory by kind of job (goal: within 20 %)", fontsize=10)
    ax.legend(loc="lower right")
    return _save(figure, "memory")


def draw_all() -> list[Path]:
    """Draw every chart whose result exists; return their paths."""
    drawn = []
    for name, draw in (("dispatch", _dispatch), ("latency", _latency), ("memory", _memory)):
        result = _load(name)
        if result is not None:
            drawn.append(draw(result))
    return drawn


if __name__ == "__main__":
    for path in draw_all():
        print(path)
