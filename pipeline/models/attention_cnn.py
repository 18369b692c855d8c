"""CNN with squeeze-and-excitation channel attention and attention pooling over time."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import check_dropout, conv_bn_relu, widening_features

__all__ = ["AttentionCNN", "SEBlock1D"]


class SEBlock1D(nn.Module):
    """Squeeze-and-excitation: reweights channels from their global average."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel by its gate."""
        return x * self.gate(x)


class AttentionCNN(nn.Module):
    """Stem, ``depth`` conv + SE + pool stages, then a learned softmax weighting over time.

    Args:
        num_classes: number of logits.
        in_channels: channels per window (sensors of a multi-channel dataset).
        width: channels after the stem; doubled every stage up to 8x.
        depth: number of conv/SE/pool stages.
        reduction: squeeze-and-excitation reduction ratio.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        width: int = 32,
        depth: int = 3,
        reduction: int = 4,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.features, channels = widening_features(width, depth, lambda c_in, c_out: [
            conv_bn_relu(c_in, c_out, 5), SEBlock1D(c_out, reduction), nn.MaxPool1d(2, 2, ceil_mode=True)],
            in_channels)
        self.score = nn.Conv1d(channels, 1, 1)
        self.head = nn.Sequential(
            nn.Dropout(check_dropout(dropout)), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        feats = self.features(x)  # [B, C, T]
        weights = torch.softmax(self.score(feats), dim=-1)  # [B, 1, T]
        return self.head((feats * weights).sum(dim=-1))
