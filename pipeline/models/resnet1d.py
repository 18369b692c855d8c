"""1-D ResNet-18: BasicBlocks [2, 2, 2, 2] after a wide (kernel 64) first convolution."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import check_dropout, stem, time_pool

__all__ = ["BasicBlock1D", "ResNet1D"]


class BasicBlock1D(nn.Module):
    """Two 3-tap convolutions with batch norm and an identity (or 1x1 projected) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm1d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1D(nn.Module):
    """ResNet-18 for 1-D signals (four stages of two BasicBlocks, widths w, 2w, 4w, 8w).

    Args:
        num_classes: number of logits.
        in_channels: channels per window (sensors of a multi-channel dataset).
        base_width: channels of the stem and the first stage.
        stem_kernel: kernel of the first convolution (64 by reference).
        stem_stride: stride of the first convolution; with the max-pool of 4 the signal is
            shortened 32x before the first stage, which keeps a 20,480-sample window cheap.
        dropout: dropout before the classifier.
        pool: how the last feature map becomes one vector: ``avg`` (the reference) or
            ``avgmax``, its mean and its maximum over time side by side. A short event (a
            20-sample impact, an 8 ms cavitation burst) moves one of the 80 positions of
            a 20,480-sample window's last map, which the mean dilutes 80x and the
            maximum keeps.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        base_width: int = 64,
        stem_kernel: int = 64,
        stem_stride: int = 8,
        dropout: float = 0.2,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        self.stem = stem(base_width, kernel_size=stem_kernel, stride=stem_stride, pool=4, in_ch=in_channels)
        stages: list[nn.Module] = []
        channels = base_width
        for index, blocks in enumerate((2, 2, 2, 2)):
            out = base_width * 2**index
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock1D(channels, out, stride))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.pool, per_channel = time_pool(pool)
        self.head = nn.Sequential(
            nn.Dropout(check_dropout(dropout)), nn.Linear(channels * per_channel, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))
