"""Benchmark: time per explanation, per method, on one 1 s window (20,480 samples).

The model is an untrained ``cnn1d`` with its default arguments (the cost of a method does
not depend on the weights); the background is 100 synthetic windows. Every method runs with
its default parameters (``pipeline.xai.METHODS``). A small warm-up call per method loads
shap, lime and sklearn outside the timing. Run ``python -m bench.bench_xai [repeats]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result
from pipeline.domain import FS, WINDOW_LENGTH

__all__ = ["run", "synthetic_windows"]

_WARM_UP = {
    "shap": {"n_samples": 2, "background_size": 2},
    "lime": {"n_samples": 10},
    "integrated_gradients": {"n_steps": 2},
    "gradcam": {},
    "kernel_shap": {"n_segments": 4, "n_samples": 8},
}


def synthetic_windows(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 20480]`` float32: noise, shaft tones at 1X and 2X, and a short 2 kHz burst."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_LENGTH) / FS
    speed = 60 * rng.uniform(0.9, 1.1, (n, 1))
    x = 0.05 * rng.standard_normal((n, WINDOW_LENGTH))
    x += 0.3 * np.sin(2 * np.pi * speed * t) + 0.1 * np.sin(4 * np.pi * speed * t)
    x[:, 8000:8163] += 0.5 * np.sin(2 * np.pi * 2000 * t[:163]) * np.hanning(163)
    return x.astype(np.float32)


def run(
    repeats: int = 1, threads: int = 1, methods: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Time each method ``repeats`` times (best and mean, wall and CPU); write JSON; return it."""
    import torch

    from pipeline.models import build_model
    from pipeline.xai import METHODS, explain

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("cnn1d").eval()
    window, background = synthetic_windows(1, seed=1)[0], synthetic_windows(100, seed=2)
    per_method: dict[str, Any] = {}
    for method in methods or tuple(METHODS):
        explain(model, "cnn1d", window, method, _WARM_UP[method], background=background[:2])
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            e = explain(model, "cnn1d", window, method, background=background)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        per_method[method] = {
            "best_ms": 1e3 * min(walls),
            "mean_ms": 1e3 * float(np.mean(walls)),
            "cpu_ms": 1e3 * min(cpus),
            "params": e.params,
            **{
                k: v
                for k, v in e.extra.items()
                if k in ("ig_relative_delta", "shap_gap", "lime_score")
            },
        }
        print(f"{method:22s} {per_method[method]['best_ms']:9.1f} ms")
    figures = {
        "model": "cnn1d (default args, untrained)",
        "window_length": WINDOW_LENGTH,
        "background_windows": len(background),
        "torch_threads": threads,
        "repeats": repeats,
        "per_method": per_method,
    }
    write_result("xai_methods", figures)
    return figures


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
