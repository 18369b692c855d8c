"""Training-time augmentation of a batch of windows (the ``augment_*`` training options).

Each training window gets its own circular shift, amplitude factor and added noise, drawn
on the batch's device from one generator per epoch seeded by the run's seed and the epoch,
so a resumed epoch sees the same augmented batches as an uninterrupted one. Validation and
test windows are never augmented.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.training.config import TrainingConfig

__all__ = ["BatchAugmenter", "make_augmenter"]

# Keeps the augmentation's generator apart from the shuffle's, which is seeded by (seed, epoch) too.
_STREAM = 0x617567


class BatchAugmenter:
    """Augments the training batches of one epoch as ``config``'s ``augment_*`` options ask."""

    def __init__(self, config: TrainingConfig, epoch: int, device: torch.device) -> None:
        self.shift, self.scale, self.noise = config.augment_shift, config.augment_scale, config.augment_noise
        seed = int(np.random.SeedSequence([config.seed, epoch, _STREAM]).generate_state(1, np.uint64)[0])
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return the batch ``x [B, C, L]`` augmented window by window (``x`` is not changed)."""
        batch, channels, length = x.shape
        # Both uniforms are drawn whatever the options, so switching one option on or off
        # never changes the draws of another.
        draws = torch.rand((2, batch), generator=self.generator, device=x.device)
        if self.shift > 0:
            most = int(self.shift * length)
            shifts = (draws[0] * (2 * most + 1)).long() - most
            index = (torch.arange(length, device=x.device) - shifts[:, None]) % length
            x = x.gather(2, index[:, None, :].expand(batch, channels, length))
        if self.scale > 0:
            x = x * (1 + self.scale * (2 * draws[1] - 1)).to(x.dtype)[:, None, None]
        if self.noise > 0:
            spread = x.std(dim=2, keepdim=True) * self.noise
            x = x + spread * torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return x


def make_augmenter(config: TrainingConfig, epoch: int, device: torch.device) -> BatchAugmenter | None:
    """The epoch's augmenter, or None when every ``augment_*`` option is 0 (the default)."""
    if config.augment_shift == config.augment_scale == config.augment_noise == 0:
        return None
    return BatchAugmenter(config, epoch, device)
