"""The network a NAS architecture describes: stem, a chain of searched layers, a linear head.

``NasNet``'s constructor arguments are the architecture itself (``stem`` and ``layers``, as
``pipeline.nas.space`` describes and a NAS campaign records them) plus ``num_classes``, so
the model registry's ``nas_net`` key builds a registered NAS winner from its experiment's
``model_args`` and ``train_model`` trains it. The architecture has no default: a searched
network is never built from a guess.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import conv_bn_relu
from pipeline.models._blocks import stem as stem_block
from pipeline.nas.space import CONV_OPS, canonical_arch

__all__ = ["NasNet", "build_candidate"]


def _separable(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    """Depthwise then pointwise convolution: the cost of a wide kernel at a fraction of its weights."""
    return nn.Sequential(
        nn.Conv1d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch, bias=False),
        nn.Conv1d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm1d(out_ch),
        nn.ReLU(inplace=True),
    )


def _layer(op: str, in_ch: int, width: int | None) -> tuple[nn.Module, int]:
    if op == "maxpool":
        return nn.MaxPool1d(2, 2, ceil_mode=True), in_ch
    if op == "avgpool":
        return nn.AvgPool1d(2, 2, ceil_mode=True), in_ch
    kernel = CONV_OPS[op]
    assert width is not None  # canonical_arch guarantees a width for every convolution
    block = _separable(in_ch, width, kernel) if op.startswith("sep") else conv_bn_relu(in_ch, width, kernel)
    return block, width


class NasNet(nn.Module):
    """A searched 1-D CNN mapping ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits.

    Args:
        num_classes: number of logits.
        in_channels: channels per window.
        stem: the stem's width.
        layers: ``[operation, width]`` pairs (``pipeline.nas.space``).

    Raises:
        InvalidInput: a width out of range or a layer that is not ``[operation, width]``.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 1, *, stem: int,
                 layers: list[Any]) -> None:
        super().__init__()
        self.arch = canonical_arch({"stem": stem, "layers": layers})
        modules: list[nn.Module] = [stem_block(self.arch["stem"], in_ch=in_channels)]
        channels = self.arch["stem"]
        for op, width in self.arch["layers"]:
            module, channels = _layer(op, channels, width)
            modules.append(module)
        self.features = nn.Sequential(*modules)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        return self.head(self.pool(self.features(x)).flatten(1))


def build_candidate(arch: dict[str, Any], num_classes: int = NUM_CLASSES,
                    in_channels: int = 1) -> NasNet:
    """Build the network of an architecture dict (``{"stem": ..., "layers": [...]}``)."""
    return NasNet(num_classes=num_classes, in_channels=in_channels, **canonical_arch(arch))
