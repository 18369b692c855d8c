"""A plain 1-D CNN: wide stem, then conv/pool stages, global average pooling."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import check_dropout, conv_bn_relu, widening_features

__all__ = ["CNN1D"]


class CNN1D(nn.Module):
    """Stem (kernel 64, stride 8, pool 4) then ``depth`` conv + max-pool stages.

    Args:
        num_classes: number of logits.
        in_channels: channels per window (sensors of a multi-channel dataset).
        width: channels after the stem; doubled every stage up to 8x.
        depth: number of conv/pool stages after the stem.
        kernel_size: kernel of the stage convolutions.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 7,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.features, channels = widening_features(
            width, depth, lambda c_in, c_out: [conv_bn_relu(c_in, c_out, kernel_size), nn.MaxPool1d(2, 2, ceil_mode=True)],
            in_channels,
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Sequential(
            nn.Dropout(check_dropout(dropout)), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        return self.head(self.pool(self.features(x)).flatten(1))
