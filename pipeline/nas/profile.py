"""What a candidate costs: parameters, multiply-accumulates (FLOPs), latency and size."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pipeline.domain import WINDOW_LENGTH
from pipeline.models.profile import count_macs
from pipeline.models.registry import count_parameters

__all__ = ["ModelProfile", "profile_model"]


@dataclass(frozen=True)
class ModelProfile:
    """A network's cost on one window: ``flops`` = 2 x ``macs``; latency on batch 1, CPU."""

    parameter_count: int
    macs: int
    flops: int
    latency_ms: float
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON."""
        return asdict(self)


def _latency_ms(model: nn.Module, length: int, repeats: int) -> float:
    x = torch.randn(1, 1, length)
    model.eval()
    with torch.no_grad():
        model(x)  # warm-up: first calls allocate
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))


def profile_model(model: nn.Module, length: int = WINDOW_LENGTH, repeats: int = 5) -> ModelProfile:
    """Measure a model on CPU: trainable parameters, MACs, median latency, weights' size in bytes."""
    model = model.to("cpu")
    was_training = model.training
    macs = count_macs(model, length)
    latency = _latency_ms(model, length, repeats)
    model.train(was_training)
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return ModelProfile(
        parameter_count=count_parameters(model), macs=macs, flops=2 * macs,
        latency_ms=round(latency, 4), size_bytes=int(size),
    )
