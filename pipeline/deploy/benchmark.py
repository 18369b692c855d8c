"""Benchmark model variants (torch checkpoints and ONNX files) on the same test windows.

Per variant and batch size: ``warmup`` untimed runs, then ``runs`` timed runs of one batch
(``time.perf_counter``), reported as p50/p95/p99/mean latency and throughput (windows per
second at the mean). Accuracy is on every test window; agreement is with the first
variant (the reference, normally torch FP32).

Peak memory: ``tracemalloc`` sees only Python allocations, not torch's or ONNX Runtime's,
and ``ru_maxrss`` never goes down, so a second variant would show nothing unless it
outgrew the first. On Linux the process's peak RSS (``VmHWM``) is reset through
``/proc/self/clear_refs`` before each variant, and its peak minus the RSS before loading
is reported (``memory_method = "vmhwm"``): what loading and running that variant added.
The first variant of each runtime also carries that runtime's one-time start-up.
Freed heap is returned to the system first (``gc`` and glibc's ``malloc_trim``), or a
variant would reuse its predecessor's freed memory and show almost nothing.
Elsewhere the ``ru_maxrss`` growth is reported instead (a lower bound, ``"ru_maxrss"``).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_file
from pipeline.deploy._common import (
    accuracy,
    agreement,
    check_input_length,
    check_labels,
    check_windows,
    file_size,
    onnx_logits,
    ort_session,
    torch_logits,
)
from pipeline.deploy.chart import save_chart
from pipeline.domain import NUM_CLASSES
from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled

__all__ = [
    "BATCH_SIZES",
    "VARIANT_KINDS",
    "BenchmarkResult",
    "LatencyStats",
    "VariantResult",
    "benchmark_variants",
    "time_runs",
    "variant_predictor",
]

VARIANT_KINDS = ("torch", "onnx")
BATCH_SIZES = (1, 8, 32)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one batch size, in milliseconds per batch."""

    batch_size: int
    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_per_s: float  # windows per second at the mean latency


@dataclass(frozen=True)
class VariantResult:
    """One variant's figures."""

    name: str
    kind: str
    path: str
    size_bytes: int
    accuracy: float
    argmax_agreement: float  # with the reference (first) variant
    peak_memory_bytes: int
    load_s: float
    latency: list[LatencyStats]


@dataclass(frozen=True)
class BenchmarkResult:
    """Every variant's figures and where the JSON and the chart were written."""

    variants: list[VariantResult]
    reference: str
    batch_sizes: list[int]
    threads: int
    warmup: int
    runs: int
    test_windows: int
    memory_method: str
    json_path: str
    chart_path: str

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return asdict(self)


def time_runs(run: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """Call ``run`` ``warmup`` times, then time ``runs`` calls; return seconds per call."""
    for _ in range(warmup):
        run()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        run()
        times[i] = time.perf_counter() - start
    return times


def _stats(batch_size: int, seconds: np.ndarray) -> LatencyStats:
    p50, p95, p99 = np.percentile(seconds, [50, 95, 99]) * 1e3
    mean = float(seconds.mean())
    return LatencyStats(
        batch_size=batch_size,
        runs=len(seconds),
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=mean * 1e3,
        throughput_per_s=batch_size / mean,
    )


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


class _PeakMemory:
    """Peak RSS added while a variant loads and runs (see the module docstring)."""

    def __init__(self) -> None:
        self.method = "vmhwm" if self._reset() else "ru_maxrss"

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(f"{field} not in /proc/self/status")

    def start(self) -> None:
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)  # hand freed heap back, or the next variant reuses it unseen
        if self.method == "vmhwm":
            self._reset()
            self._base = self._status("VmRSS")
        else:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak(self) -> int:
        if self.method == "vmhwm":
            return max(self._status("VmHWM") - self._base, 0)
        return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base, 0)


def _check_variants(variants: Sequence[Sequence[str]]) -> list[tuple[str, str, Path]]:
    checked = []
    for entry in variants:
        if len(entry) != 3:
            raise InvalidInput(f"a variant is (name, kind, path), got {entry!r}")
        name, kind, path = entry
        if kind not in VARIANT_KINDS:
            raise InvalidInput(f"variant {name!r}: unknown kind {kind!r}; valid: {VARIANT_KINDS}")
        if not Path(path).is_file():
            raise InvalidInput(f"variant {name!r}: file not found: {path}")
        checked.append((str(name), kind, Path(path)))
    names = [name for name, _, _ in checked]
    if not checked or len(set(names)) != len(names):
        raise InvalidInput(f"variants must be non-empty with unique names, got {names}")
    return checked


def variant_predictor(
    kind: str, path: Path, threads: int, windows: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a batch of windows ``[b, L]`` to logits, for a ``torch`` or ``onnx`` model file
    (ONNX Runtime with ``threads`` intra-op threads; torch uses the process's setting)."""
    if kind == "onnx":
        session = ort_session(path, threads)
        check_input_length(session, windows, f"test windows for {path.name}")
        return lambda batch: onnx_logits(session, batch, len(batch))
    from pipeline.deploy.loading import load_model

    model, _ = load_model(path)
    return lambda batch: torch_logits(model, batch, len(batch))


def _run_variant(
    variant: str,
    kind: str,
    path: Path,
    windows: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray | None,
    sizes: list[int],
    warmup: int,
    runs: int,
    threads: int,
    memory: _PeakMemory,
    on_progress: ProgressFn,
    should_stop: StopFn,
) -> tuple[VariantResult, np.ndarray]:
    memory.start()
    started = time.perf_counter()
    predict = variant_predictor(kind, path, threads, windows)
    load_s = time.perf_counter() - started
    logits = np.concatenate([predict(windows[i : i + 32]) for i in range(0, len(windows), 32)])
    on_progress(1 / (len(sizes) + 1), f"{variant}: accuracy")
    latency = []
    for step, batch_size in enumerate(sizes, start=2):
        check_stop(should_stop)
        batch = np.ascontiguousarray(windows[np.arange(batch_size) % len(windows)])
        latency.append(_stats(batch_size, time_runs(partial(predict, batch), warmup, runs)))
        on_progress(step / (len(sizes) + 1), f"{variant}: batch {batch_size}")
    result = VariantResult(
        name=variant,
        kind=kind,
        path=str(path),
        size_bytes=file_size(path),
        accuracy=accuracy(logits, labels),
        argmax_agreement=agreement(logits if reference is None else reference, logits),
        peak_memory_bytes=memory.peak(),
        load_s=load_s,
        latency=latency,
    )
    return result, logits


def benchmark_variants(
    variants: Sequence[Sequence[str]],
    test_windows: np.ndarray,
    test_labels: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    warmup: int = 3,
    runs: int = 30,
    threads: int = 1,
    name: str = "benchmark",
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> BenchmarkResult:
    """Benchmark ``variants`` and write ``{out_dir}/{name}.json`` and ``{name}.png``.

    Args:
        variants: ``(name, kind, path)`` with kind ``"torch"`` (any checkpoint
            ``load_model`` reads: FP32, pruned, fused, dynamic INT8) or ``"onnx"`` (FP32,
            INT8, FP16). The first is the reference for argmax agreement.
        test_windows, test_labels: the test split; timing batches are its first windows.
        threads: torch and ONNX Runtime intra-op threads (torch's setting is restored).

    Raises:
        InvalidInput: bad variants, windows, labels, batch sizes or counts.
        CheckpointError: a torch variant's checkpoint cannot be loaded.
    """
    import torch

    checked = _check_variants(variants)
    windows = check_windows(test_windows, "test windows")
    labels = check_labels(test_labels, len(windows), NUM_CLASSES, "test labels")
    sizes = [int(b) for b in batch_sizes]
    if not sizes or min(sizes) < 1 or warmup < 0 or runs < 1 or threads < 1:
        raise InvalidInput("batch sizes, runs and threads must be >= 1, warm-up >= 0")
    memory = _PeakMemory()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: list[VariantResult] = []
    reference: np.ndarray | None = None
    try:
        for index, (variant, kind, path) in enumerate(checked):
            check_stop(should_stop)
            progress = scaled(on_progress, index / len(checked), (index + 1) / len(checked))
            measured, logits = _run_variant(
                variant,
                kind,
                path,
                windows,
                labels,
                reference,
                sizes,
                warmup,
                runs,
                threads,
                memory,
                progress,
                should_stop,
            )
            reference = logits if reference is None else reference
            results.append(measured)
    finally:
        torch.set_num_threads(previous_threads)
    out = Path(out_dir)
    json_path, chart_path = out / f"{name}.json", out / f"{name}.png"
    result = BenchmarkResult(
        variants=results,
        reference=results[0].name,
        batch_sizes=sizes,
        threads=threads,
        warmup=warmup,
        runs=runs,
        test_windows=len(windows),
        memory_method=memory.method,
        json_path=str(json_path),
        chart_path=str(chart_path),
    )
    with atomic_file(json_path) as handle:
        handle.write(json.dumps(result.to_dict(), indent=2).encode())
    save_chart(result.to_dict(), chart_path)
    on_progress(1.0, "benchmarked")
    return result
