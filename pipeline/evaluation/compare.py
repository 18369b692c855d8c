"""Architectures side by side: accuracy, macro F1, size, FLOPs, latency, training time, Pareto front."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.errors import InvalidInput
from pipeline.models.profile import count_macs

__all__ = ["ModelProfile", "compare_models", "measure_latency", "pareto_front", "profile_model"]


@dataclass(frozen=True)
class ModelProfile:
    """What is known of one trained model; ``macs``/``flops`` are ``None`` for classical models."""

    experiment_id: str
    model_key: str
    accuracy: float | None
    f1_macro: float | None
    parameters: int
    macs: int | None
    flops: int | None
    latency_ms: float
    model_size_bytes: int
    training_time_s: float | None


def measure_latency(
    predict_proba: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, repeats: int = 3
) -> float:
    """Median milliseconds to classify one window, each window passed alone (batch of one).

    One warm-up call first (lazy imports, allocator, FFT plans), then every window of
    ``windows`` ``repeats`` times; the median resists the odd slow call on a shared machine.

    Raises:
        InvalidInput: no windows or ``repeats`` < 1.
    """
    x = np.asarray(windows)
    if x.ndim not in (2, 3) or x.shape[0] == 0 or repeats < 1:
        raise InvalidInput(f"latency needs windows [n > 0, L] or [n > 0, C, L] and repeats ≥ 1, got {x.shape}, {repeats}")
    predict_proba(x[:1])
    times = []
    for _ in range(repeats):
        for i in range(x.shape[0]):
            start = time.perf_counter()
            predict_proba(x[i : i + 1])
            times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def profile_model(
    experiment_id: str,
    predictor: Any,
    windows: np.ndarray,
    *,
    metrics: dict[str, Any] | None,
    model_size_bytes: int,
    training_time_s: float | None,
    repeats: int = 3,
) -> ModelProfile:
    """Measure one model (a ``Predictor``) on ``windows`` and combine it with its recorded facts.

    Deep models run on one torch thread while timed: a ``cpu_processing`` worker has one
    core, and comparisons are only fair when every model gets the same. A classical model's
    latency includes computing its 36 features from the raw window, as in deployment.
    """
    macs = None
    if predictor.module is not None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            shape = np.asarray(windows).shape
            macs = count_macs(predictor.module, int(shape[-1]), 1 if len(shape) == 2 else int(shape[1]))
            latency = measure_latency(predictor.predict_proba, windows, repeats)
        finally:
            torch.set_num_threads(threads)
    else:
        latency = measure_latency(predictor.predict_proba, windows, repeats)
    metrics = metrics or {}
    return ModelProfile(
        experiment_id=experiment_id, model_key=predictor.model_key,
        accuracy=metrics.get("window_accuracy"), f1_macro=metrics.get("f1_macro"),
        parameters=predictor.parameter_count, macs=macs, flops=None if macs is None else 2 * macs,
        latency_ms=latency, model_size_bytes=int(model_size_bytes), training_time_s=training_time_s,
    )


def pareto_front(accuracy: Sequence[float], latency: Sequence[float]) -> list[int]:
    """Indices of the models no other model beats on both counts, fastest first.

    Model ``j`` dominates ``i`` when it is at least as accurate and at least as fast, and
    strictly better on one of the two.
    """
    acc, lat = np.asarray(accuracy, dtype=float), np.asarray(latency, dtype=float)
    front = []
    for i in range(acc.size):
        dominated = (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        if not dominated.any():
            front.append(i)
    return sorted(front, key=lambda i: (lat[i], -acc[i]))


def compare_models(profiles: Sequence[ModelProfile]) -> dict[str, Any]:
    """Table of the profiles, the accuracy/latency Pareto front, and the best of each column.

    A model without a recorded accuracy counts as 0 for the front.

    Raises:
        InvalidInput: no profile, or one experiment twice.
    """
    if not profiles:
        raise InvalidInput("compare needs at least one model")
    ids = [p.experiment_id for p in profiles]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"an experiment is listed twice: {ids}")
    accuracy = [p.accuracy or 0.0 for p in profiles]
    latency = [p.latency_ms for p in profiles]
    front = pareto_front(accuracy, latency)
    return {
        "models": [asdict(p) for p in profiles],
        "pareto_front": [ids[i] for i in front],
        "most_accurate": ids[int(np.argmax(accuracy))],
        "fastest": ids[int(np.argmin(latency))],
        "smallest": ids[int(np.argmin([p.model_size_bytes for p in profiles]))],
    }
