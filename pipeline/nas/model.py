"""The network a NAS architecture describes: stem, a chain of searched layers, a linear head.

``NasNet`` takes its architecture as JSON text, so its constructor arguments are the plain
values the model registry validates (a registry entry ``"nas_net":
"pipeline.nas.model:NasNet"`` lets ``train_model`` train a registered NAS winner).
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import conv_bn_relu, stem
from pipeline.nas.space import CONV_OPS, canonical_arch

__all__ = ["DEFAULT_ARCH", "NasNet", "build_candidate"]

DEFAULT_ARCH = json.dumps({"stem": 8, "layers": [["conv5", 16], ["maxpool", None], ["conv3", 32]]})


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
    """A searched 1-D CNN mapping ``[B, 1, L]`` signals to ``[B, num_classes]`` logits.

    Args:
        num_classes: number of logits.
        arch: the architecture as JSON text (``pipeline.nas.space``); refused when invalid.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, arch: str = DEFAULT_ARCH) -> None:
        super().__init__()
        try:
            parsed = json.loads(arch)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arch is not JSON: {exc}") from None
        self.arch = canonical_arch(parsed)
        layers: list[nn.Module] = [stem(self.arch["stem"])]
        channels = self.arch["stem"]
        for op, width in self.arch["layers"]:
            layer, channels = _layer(op, channels, width)
            layers.append(layer)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, 1, L]`` signals to ``[B, num_classes]`` logits."""
        return self.head(self.pool(self.features(x)).flatten(1))


def build_candidate(arch: dict[str, Any], num_classes: int = NUM_CLASSES) -> NasNet:
    """Build the network of an architecture dict."""
    return NasNet(num_classes=num_classes, arch=json.dumps(arch))
