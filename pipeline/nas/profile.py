"""What a candidate costs: parameters, multiply-accumulates (FLOPs), latency and size."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pipeline.domain import WINDOW_LENGTH
from pipeline.models.registry import count_parameters

__all__ = ["ModelProfile", "count_macs", "profile_model"]


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


def count_macs(model: nn.Module, length: int = WINDOW_LENGTH) -> int:
    """Count the multiply-accumulates of one forward pass on ``[1, 1, length]`` (conv and linear layers).

    Forward hooks see each layer's real output size, so strides, pooling and padding are
    accounted for without re-deriving the shapes.
    """
    total = 0

    def conv_hook(module: nn.Conv1d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0]

    def linear_hook(module: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, length))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)


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
