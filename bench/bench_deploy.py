"""ResNet18-1D inference: torch eager vs ONNX Runtime FP32 vs static INT8, on this CPU.

Trains nothing: the model has its default arguments (20,480-sample windows) and seeded
random weights, which is enough for speed; only its batch-norm statistics are estimated on
generated windows (see ``_estimate_batchnorm``). The ONNX model is verified against torch on
generated windows, and the INT8 one is calibrated on other generated windows (a different
seed), so calibration and evaluation never share a window. Each engine runs batch 1, 8 and
32 on one thread and on every core (``benchmark_variants``: one engine after the other),
and batch 1 on one thread again with the engines interleaved call by call
(``_paired_p50``), which is what the goal is judged on: this machine is shared, and
interleaving puts any change of load on every engine alike.

Goals (issue 6): ONNX FP32 p50 at least 1.5x faster than torch eager on one window; INT8
faster than ONNX FP32 (``meets_goal``), with argmax agreement >= 99 %
(``meets_agreement_goal``, against FP32 on the evaluation windows; with random weights the
top-2 logit margins are tiny, so this figure understates what a trained model keeps).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import write_result
from pipeline.deploy._common import onnx_logits, ort_session, torch_logits
from pipeline.deploy.benchmark import benchmark_variants, time_runs
from pipeline.deploy.export import export_onnx
from pipeline.deploy.loading import load_model
from pipeline.deploy.quantize import quantize_static_onnx
from pipeline.domain import CLASS_KEYS, WINDOW_LENGTH
from pipeline.models import build_model
from pipeline.signals import GeneratorConfig, generate_records
from pipeline.training.checkpoint import save_checkpoint

__all__ = ["run"]

GOAL_ONNX_SPEEDUP = 1.5
GOAL_INT8_AGREEMENT = 0.99


def _windows(records_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    config = GeneratorConfig(records_per_class=records_per_class, seed=seed)
    records = generate_records(config, range(config.n_records), workers=1)
    windows = np.stack([r.signal for r in records]).reshape(-1, WINDOW_LENGTH)
    labels = np.repeat([r.label for r in records], windows.shape[0] // len(records))
    return windows, labels


@torch.no_grad()
def _estimate_batchnorm(model: torch.nn.Module, windows: np.ndarray) -> None:
    """Re-estimate batch-norm running statistics on ``windows`` (no gradient, no labels).

    Random weights with the default statistics (mean 0, variance 1) give logits that hardly
    depend on the input (one class for every window), which would make the INT8 argmax
    agreement trivially 100 %. The weights stay random: nothing is trained.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over every batch
    model.train()
    for start in range(0, len(windows), 32):
        model(torch.from_numpy(windows[start : start + 32]).unsqueeze(1))
    model.eval()


def _paired_p50(
    paths: dict[str, tuple[str, str]], window: np.ndarray, threads: int, runs: int
) -> dict[str, float]:
    """p50 ms of each engine on one window, timed in turn call after call.

    The machine is shared: timing engines one after the other lets a change of load land on
    one of them only. Interleaved, every engine sees the same conditions.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engines: dict[str, Callable[[], object]] = {}
        for name, (kind, path) in paths.items():
            if kind == "torch":
                model = load_model(path)[0]
                engines[name] = partial(torch_logits, model, window)
            else:
                engines[name] = partial(onnx_logits, ort_session(path, threads), window)
        for run_once in engines.values():
            time_runs(run_once, 5, 0)
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(runs):
            for name, run_once in engines.items():
                times[name].append(float(time_runs(run_once, 0, 1)[0]))
    finally:
        torch.set_num_threads(previous)
    return {name: round(float(np.median(t)) * 1e3, 3) for name, t in times.items()}


def _p50(result: Any) -> dict[str, dict[int, float]]:
    return {v.name: {s.batch_size: round(s.p50_ms, 3) for s in v.latency} for v in result.variants}


def run(quick: bool = False) -> dict[str, Any]:
    """Export, quantise and time ResNet18-1D; write ``bench/results/deploy.json``."""
    runs, warmup, paired_runs = (5, 1, 20) if quick else (20, 3, 150)
    calibration, _ = _windows(2 if quick else 3, seed=101)
    windows, labels = _windows(1 if quick else 2, seed=202)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="pfd-bench-deploy-") as tmp:
        out = Path(tmp)
        torch.manual_seed(0)
        model = build_model("resnet18", {}).eval()
        _estimate_batchnorm(model, calibration)
        checkpoint = save_checkpoint(out / "resnet18.pt", model, "resnet18", {}, CLASS_KEYS, {})
        started = time.perf_counter()
        fp32 = export_onnx(checkpoint, out / "fp32.onnx", windows)
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        int8 = quantize_static_onnx(fp32.path, out / "int8.onnx", calibration, windows, labels)
        quantize_s = time.perf_counter() - started
        # Agreement only tells something if FP32 does not predict one class for everything.
        logits = onnx_logits(ort_session(fp32.path), windows)
        classes = len(np.unique(logits.argmax(axis=1)))
        top2 = np.sort(logits, axis=1)[:, -2:]
        margin = float(np.median(top2[:, 1] - top2[:, 0]))
        variants = [
            ("torch_eager", "torch", str(checkpoint)),
            ("onnx_fp32", "onnx", fp32.path),
            ("onnx_int8", "onnx", int8.path),
        ]
        paths = {name: (kind, path) for name, kind, path in variants}
        by_threads: dict[str, dict[str, Any]] = {}
        for threads in sorted({1, cores}):
            result = benchmark_variants(
                variants,
                windows,
                labels,
                out,
                warmup=warmup,
                runs=runs,
                threads=threads,
                name=f"bench-{threads}",
            )
            p50 = _p50(result)
            by_threads[str(threads)] = {
                "p50_ms": p50,
                "onnx_fp32_speedup_over_torch": {
                    b: round(p50["torch_eager"][b] / p50["onnx_fp32"][b], 2) for b in (1, 8, 32)
                },
                "int8_speedup_over_onnx_fp32": {
                    b: round(p50["onnx_fp32"][b] / p50["onnx_int8"][b], 2) for b in (1, 8, 32)
                },
                "peak_memory_mb": {
                    v.name: round(v.peak_memory_bytes / 1e6, 1) for v in result.variants
                },
            }
        # Interleaving is one thread only: thread pools (OpenMP, ONNX Runtime) spin-wait
        # after each call and would steal the cores from the next engine.
        paired = _paired_p50(paths, windows[:1], 1, paired_runs)
    figures: dict[str, Any] = {
        "model": "resnet18 (default args, random weights)",
        "window_length": WINDOW_LENGTH,
        "quick": quick,
        "runs": runs,
        "warmup": warmup,
        "paired_runs": paired_runs,
        "opset": fp32.opset,
        "export_s": round(export_s, 2),
        "quantize_s": round(quantize_s, 2),
        "parity_max_abs_diff": fp32.max_abs_diff,
        "fp32_onnx_mb": round(fp32.size_bytes / 1e6, 2),
        "int8_onnx_mb": round(int8.size_bytes / 1e6, 2),
        "int8_argmax_agreement": int8.argmax_agreement,
        "fp32_distinct_predicted_classes": classes,
        "fp32_median_top2_logit_margin": round(margin, 4),
        "int8_max_abs_diff": round(int8.max_abs_diff, 5),
        "calibration_windows": int8.details["calibration_windows"],
        "evaluation_windows": len(windows),
        "threads": by_threads,
        "paired_b1_1thread_p50_ms": paired,
        "onnx_fp32_speedup_b1_1thread": round(paired["torch_eager"] / paired["onnx_fp32"], 2),
        "int8_speedup_b1_1thread": round(paired["onnx_fp32"] / paired["onnx_int8"], 2),
        "onnx_fp32_speedup_b1_all_cores": by_threads[str(cores)]["onnx_fp32_speedup_over_torch"][1],
        "goal_onnx_speedup": GOAL_ONNX_SPEEDUP,
        "goal_int8_agreement": GOAL_INT8_AGREEMENT,
    }
    # Speed is judged on one thread, interleaved (a worker process runs one model on one
    # thread); the every-core figures are reported beside it. Agreement is reported apart:
    # random weights leave top-2 logit margins of a few hundredths, which INT8 rounding
    # flips, so only a trained checkpoint can judge the 99 % goal.
    figures["meets_goal"] = bool(
        figures["onnx_fp32_speedup_b1_1thread"] >= GOAL_ONNX_SPEEDUP
        and figures["int8_speedup_b1_1thread"] > 1.0
    )
    figures["meets_agreement_goal"] = int8.argmax_agreement >= GOAL_INT8_AGREEMENT
    write_result("deploy", figures)
    return figures


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
