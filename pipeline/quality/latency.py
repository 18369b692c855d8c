"""Latency and throughput of a saved model, and of an HTTP inference endpoint.

A model is timed on ``num_samples`` real windows for every batch size and thread count: the
windows go through in batches of that size (cycling over the windows given), each batch
timed; the figures are per-batch percentiles, the mean per window and windows per second.
An endpoint gets POSTed requests, at most ``max_requests`` and for at most ``max_duration_s``,
``concurrency`` at a time; every answer, error and timeout is counted.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress

__all__ = ["measure_endpoint", "measure_model", "percentiles_ms"]

_ERRORS_KEPT = 5


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean of ``seconds``, in milliseconds (zeros when empty)."""
    if not len(seconds):
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(seconds), [50, 95, 99]) * 1e3
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "mean_ms": float(np.mean(seconds) * 1e3)}


def measure_model(
    kind: str, path: str | Path, windows: np.ndarray, *, batch_sizes: Sequence[int], threads: Sequence[int],
    num_samples: int, warmup: int = 3, on_progress: ProgressFn = no_progress, should_stop: StopFn = never_stop,
) -> dict[str, Any]:
    """Time a ``torch`` or ``onnx`` model file on ``num_samples`` windows per batch size and thread count.

    Raises:
        InvalidInput: no windows, or a bad count. CheckpointError: an unreadable checkpoint.
        StopRequested: ``should_stop()`` answered true between two batches.
    """
    import torch

    from pipeline.deploy.benchmark import variant_predictor

    windows = np.ascontiguousarray(windows, dtype=np.float32)
    if windows.ndim not in (2, 3) or not len(windows):
        raise InvalidInput(f"windows must be a non-empty [n, L] or [n, C, L] array, got shape {windows.shape}")
    if num_samples < 1 or warmup < 0 or not batch_sizes or not threads or min(*batch_sizes, *threads) < 1:
        raise InvalidInput("num_samples, batch sizes and thread counts must be >= 1, warm-up >= 0")
    grid = [(t, b) for t in threads for b in batch_sizes]
    rows = []
    previous = torch.get_num_threads()
    try:
        for step, (count, batch_size) in enumerate(grid):
            torch.set_num_threads(count)
            predict = variant_predictor(kind, Path(path), count, windows)
            batches = math.ceil(num_samples / batch_size)
            cycle = [np.ascontiguousarray(windows[(i * batch_size + np.arange(batch_size)) % len(windows)])
                     for i in range(min(batches, math.ceil(len(windows) / batch_size)))]
            for i in range(warmup):
                predict(cycle[i % len(cycle)])
            times = []
            for i in range(batches):
                check_stop(should_stop)
                started = time.perf_counter()
                predict(cycle[i % len(cycle)])
                times.append(time.perf_counter() - started)
            total = float(sum(times))
            rows.append({"threads": count, "batch_size": batch_size, "batches": batches,
                         "windows": batches * batch_size, **percentiles_ms(times),
                         "ms_per_window": 1e3 * total / (batches * batch_size),
                         "throughput_per_s": batches * batch_size / total if total else 0.0})
            on_progress((step + 1) / len(grid), f"threads {count}, batch {batch_size}")
    finally:
        torch.set_num_threads(previous)
    return {"kind": kind, "num_samples": num_samples, "warmup": warmup, "window_length": int(windows.shape[1]),
            "results": rows}


def measure_endpoint(
    url: str, body: dict[str, Any], *, max_requests: int, max_duration_s: float, concurrency: int = 1,
    request_timeout_s: float = 10.0, on_progress: ProgressFn = no_progress, should_stop: StopFn = never_stop,
) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url`` until ``max_requests`` are sent or ``max_duration_s`` has passed.

    Returns counts by HTTP status, ``succeeded`` (2xx), errors (connection, timeout) with the
    first few messages, latency percentiles of answered requests, and 2xx answers per second.

    Raises:
        InvalidInput: a URL that is not http(s), or a bad bound.
        StopRequested: ``should_stop()`` answered true (the requests in flight finish first).
    """
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"the endpoint must be an http(s) URL, got {url!r}")
    if max_requests < 1 or max_duration_s <= 0 or concurrency < 1 or request_timeout_s <= 0:
        raise InvalidInput("max_requests, concurrency, max_duration_s and request_timeout_s must be positive")
    data = json.dumps(body).encode("utf-8")
    lock = threading.Lock()
    sent = 0
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + max_duration_s

    def take() -> bool:
        nonlocal sent
        with lock:
            if sent >= max_requests or time.perf_counter() >= deadline or should_stop():
                return False
            sent += 1
            return True

    def one() -> None:
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        begun = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=request_timeout_s) as answer:
                answer.read()
                status = str(answer.status)
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
        except OSError as exc:  # refused, reset or timed out (URLError is an OSError)
            with lock:
                statuses["error"] += 1
                if len(errors) < _ERRORS_KEPT:
                    errors.append(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
            return
        with lock:
            statuses[status] += 1
            latencies.append(time.perf_counter() - begun)

    def client() -> None:
        while take():
            one()
            on_progress(min(sent / max_requests, 1.0), f"{sent} requests")

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pfd-endpoint") as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    check_stop(should_stop)
    duration = time.perf_counter() - started
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    return {"url": url, "requests": sent, "succeeded": ok, "statuses": dict(statuses), "errors": errors,
            "concurrency": concurrency, "duration_s": duration,
            "stopped_by": "count" if sent >= max_requests else "time",
            **percentiles_ms(latencies), "throughput_per_s": ok / duration if duration else 0.0}
