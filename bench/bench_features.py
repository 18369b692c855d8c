"""Benchmark: feature extraction vectorised over windows vs one window per call.

Run ``python -m bench.bench_features [out_dir]`` (or ``python bench/bench_features.py``).
Windows come from the project's generator (one record per class, 5 windows each) when it
imports, else from noise plus shaft tones and bursts of the same size and scale.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    # Run as a script: make the repository root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.domain import FS, WINDOW_LENGTH, WINDOWS_PER_RECORD
from pipeline.features import DOMAINS, extract_features, extract_features_loop

__all__ = ["make_windows", "run"]


def make_windows(records_per_class: int = 1, seed: int = 0) -> tuple[np.ndarray, str]:
    """Windows ``[n, 20480]`` float32 and where they came from (``generator`` or ``synthetic``)."""
    try:
        from pipeline.signals import GeneratorConfig, generate_record
    except ImportError:
        generate_record = None
    if generate_record is not None:
        config = GeneratorConfig(records_per_class=records_per_class, seed=seed)
        signals = [generate_record(config, i).signal for i in range(config.n_records)]
        return np.stack(signals).reshape(-1, WINDOW_LENGTH).astype(np.float32), "generator"
    rng = np.random.default_rng(seed)
    n = 11 * records_per_class * WINDOWS_PER_RECORD
    t = np.arange(WINDOW_LENGTH) / FS
    x = 0.05 * rng.standard_normal((n, WINDOW_LENGTH))
    speed = 60 * rng.uniform(0.9, 1.1, (n, 1))
    x += 0.3 * np.sin(2 * np.pi * speed * t) + 0.1 * np.sin(4 * np.pi * speed * t)
    x[:, 4000:4163] += 0.5 * np.sin(2 * np.pi * 2000 * t[:163])
    return x.astype(np.float32), "synthetic"


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, float, Any]:
    """Wall and process-CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run(out_dir: str | Path, records_per_class: int = 1, repeats: int = 2) -> dict[str, Any]:
    """Measure windows/s of ``extract_features`` vs ``extract_features_loop``; write JSON.

    Each domain is also timed alone both ways (``by_domain``).

    The best of ``repeats`` runs is kept for each (the machine is shared; the best run is
    the least disturbed). CPU time is reported too: under contention it is the fairer
    figure. Returns the figures, also written to ``out_dir/bench_features.json``.
    """
    windows, source = make_windows(records_per_class)
    n = windows.shape[0]
    extract_features(windows[:2])  # warm caches and FFT plans outside the timing
    vec = min((_timed(extract_features, windows) for _ in range(repeats)), key=lambda r: r[0])
    loop = min((_timed(extract_features_loop, windows) for _ in range(repeats)), key=lambda r: r[0])
    max_rel_diff = float(
        np.max(np.abs(vec[2].values - loop[2].values) / (np.abs(loop[2].values) + 1e-12))
    )
    # Where batching helps and where it cannot: each domain alone, both ways.
    by_domain = {}
    for domain in DOMAINS:
        vec_s = min(_timed(extract_features, windows, domains=[domain])[0] for _ in range(repeats))
        loop_s = min(_timed(extract_features_loop, windows, domains=[domain])[0] for _ in range(repeats))
        by_domain[domain] = {"vectorised_ms_per_window": round(1e3 * vec_s / n, 3),
                             "loop_ms_per_window": round(1e3 * loop_s / n, 3), "speedup": round(loop_s / vec_s, 2)}
    figures = {
        "source": source,
        "windows": n,
        "window_length": WINDOW_LENGTH,
        "vectorised_windows_per_s": n / vec[0],
        "loop_windows_per_s": n / loop[0],
        "speedup_wall": loop[0] / vec[0],
        "speedup_cpu": loop[1] / vec[1],
        "vectorised_ms_per_window": 1e3 * vec[0] / n,
        "loop_ms_per_window": 1e3 * loop[0] / n,
        "max_relative_difference": max_rel_diff,
        "by_domain": by_domain,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_features.json").write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")
    return figures


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
