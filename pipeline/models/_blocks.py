"""Building blocks shared by the 1-D architectures."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["check_dropout", "conv_bn_relu", "stem", "time_pool", "widening_features"]


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Return a same-padded Conv1d -> BatchNorm1d -> ReLU block."""
    return nn.Sequential(
        nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(out_ch),
        nn.ReLU(inplace=True),
    )


def stem(out_ch: int, kernel_size: int = 64, stride: int = 8, pool: int = 4,
         in_ch: int = 1) -> nn.Sequential:
    """Return the wide first convolution that shrinks the signal early (length / stride / pool).

    A wide first kernel (64 samples, as in WDCNN) sees a whole low-frequency period and keeps
    the cost of every later layer down on a CPU.
    """
    padding = max((kernel_size - stride) // 2, 0)
    return nn.Sequential(
        nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False),
        nn.BatchNorm1d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(pool, pool) if pool > 1 else nn.Identity(),
    )


def widening_features(
    width: int, depth: int, stage: Callable[[int, int], list[nn.Module]], in_channels: int = 1,
) -> tuple[nn.Sequential, int]:
    """Return the stem then ``depth`` stages, and the last stage's channels.

    Stage ``i`` maps its input channels to ``width * min(2 ** (i + 1), 8)``; ``stage(in, out)``
    returns its layers, which are laid out flat after the stem.
    """
    layers: list[nn.Module] = [stem(width, in_ch=in_channels)]
    channels = width
    for index in range(depth):
        out = width * min(2 ** (index + 1), 8)
        layers += stage(channels, out)
        channels = out
    return nn.Sequential(*layers), channels


class _AvgMaxPool(nn.Module):
    """The mean and the maximum over time of ``[B, C, L]``, as ``[B, 2C, 1]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` over its last axis both ways."""
        return torch.cat((x.mean(-1, keepdim=True), x.amax(-1, keepdim=True)), dim=1)


def time_pool(kind: str) -> tuple[nn.Module, int]:
    """The pooling over time named ``avg`` or ``avgmax``, and how many values per channel it
    gives (``[B, C, 1]``: 1, ``[B, 2C, 1]``: 2).

    Raises:
        ValueError: any other name.
    """
    if kind == "avg":
        return nn.AdaptiveAvgPool1d(1), 1
    if kind == "avgmax":
        return _AvgMaxPool(), 2
    raise ValueError(f"pool must be 'avg' or 'avgmax', got {kind!r}")


def check_dropout(value: float) -> float:
    """Return ``value`` when it is a valid dropout probability, else raise ``ValueError``."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value}")
    return value
