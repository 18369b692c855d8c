"""Signal transformer: non-overlapping patch embedding, then a small TransformerEncoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.domain import NUM_CLASSES
from pipeline.models._blocks import check_dropout

__all__ = ["SignalTransformer"]

MAX_PATCH = 512  # the smallest supported window, so every window holds at least one patch


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Return fixed sine/cosine position codes ``[length, dim]`` (any length works)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim)
    )
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


class SignalTransformer(nn.Module):
    """Patches of ``patch_size`` samples embedded linearly, a [CLS] token, pre-norm encoder.

    Positions are sinusoidal and computed per call, so any length >= ``patch_size`` works.

    Args:
        num_classes: number of logits.
        in_channels: channels per window (sensors of a multi-channel dataset).
        patch_size: samples per token (at most 512).
        d_model: token width; must be even and divisible by ``nhead``.
        nhead: attention heads.
        num_layers: encoder layers.
        dim_feedforward: width of each encoder layer's feed-forward block.
        dropout: dropout inside the encoder and before the classifier.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        patch_size: int = 256,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if patch_size > MAX_PATCH:
            raise ValueError(f"patch_size must be at most {MAX_PATCH}, got {patch_size}")
        if d_model % 2 or d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be even and divisible by nhead ({nhead})")
        check_dropout(dropout)
        self.embed = nn.Sequential(
            nn.Conv1d(in_channels, d_model, patch_size, stride=patch_size), nn.GroupNorm(1, d_model)
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, L]`` signals to ``[B, num_classes]`` logits."""
        tokens = self.embed(x).transpose(1, 2)  # [B, T, D]
        tokens = tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.norm(self.encoder(tokens)[:, 0]))
