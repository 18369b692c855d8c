"""CNN front end that turns the signal into a short sequence, then an LSTM over it."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import check_dropout, conv_bn_relu, stem

__all__ = ["CNNLSTM"]


class CNNLSTM(nn.Module):
    """Stem + two conv/pool stages (length / 128), an LSTM, mean of its outputs over time.

    Args:
        num_classes: number of logits.
        in_channels: channels per window (sensors of a multi-channel dataset).
        width: channels after the stem (the LSTM sees ``4 * width`` features per step).
        hidden_size: LSTM hidden units per direction.
        num_layers: stacked LSTM layers.
        bidirectional: run the LSTM both ways.
        dropout: dropout before the classifier (and between LSTM layers).
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        width: int = 32,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        self.features = nn.Sequential(
            stem(width, in_ch=in_channels),
            conv_bn_relu(width, 2 * width, 5),
            nn.MaxPool1d(2, 2, ceil_mode=True),
            conv_bn_relu(2 * width, 4 * width, 5),
            nn.MaxPool1d(2, 2, ceil_mode=True),
        )
        self.lstm = nn.LSTM(
            4 * width,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        out = hidden_size * (2 if bidirectional else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        seq = self.features(x).transpose(1, 2)  # [B, T, C]
        out, _ = self.lstm(seq)
        return self.head(out.mean(dim=1))
