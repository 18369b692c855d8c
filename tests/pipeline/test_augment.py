"""Training-time augmentation: each window shifted, scaled and noised on its own, reproducibly."""

from __future__ import annotations

import torch

from pipeline.training import TrainingConfig
from pipeline.training.augment import make_augmenter

CPU = torch.device("cpu")


def _batch() -> torch.Tensor:
    return torch.randn((16, 2, 200), generator=torch.Generator().manual_seed(0))


def _augment(epoch: int = 1, **options: float) -> torch.Tensor:
    augmenter = make_augmenter(TrainingConfig(seed=7, **options), epoch, CPU)
    assert augmenter is not None
    return augmenter(_batch())


def test_no_option_means_no_augmenter() -> None:
    assert make_augmenter(TrainingConfig(), 1, CPU) is None


def test_shift_rolls_each_window_by_its_own_amount_within_the_bound() -> None:
    x, shifted = _batch(), _augment(augment_shift=0.1)
    shifts = []
    for window, moved in zip(x, shifted, strict=True):
        matches = [s for s in range(-20, 21) if torch.equal(torch.roll(window, s, dims=1), moved)]
        assert len(matches) == 1  # a roll of both channels together, at most 10 % of 200 samples
        shifts.append(matches[0])
    assert len(set(shifts)) > 5


def test_scale_multiplies_each_window_by_one_factor_within_the_range() -> None:
    factors = _augment(augment_scale=0.15) / _batch()
    per_window = factors.flatten(1)
    torch.testing.assert_close(per_window, per_window[:, :1].expand_as(per_window))
    assert per_window.min() >= 0.85 and per_window.max() <= 1.15
    assert per_window[:, 0].std() > 0.03  # each window its own factor


def test_noise_is_that_fraction_of_each_windows_spread() -> None:
    x = _batch() * torch.linspace(0.1, 10, 16)[:, None, None]  # windows of very different spread
    augmenter = make_augmenter(TrainingConfig(augment_noise=0.2), 1, CPU)
    added = augmenter(x) - x
    ratio = added.std(dim=2) / x.std(dim=2)
    assert ratio.min() > 0.15 and ratio.max() < 0.25


def test_same_seed_and_epoch_give_the_same_augmentation_and_another_epoch_another() -> None:
    options = {"augment_shift": 0.05, "augment_scale": 0.1, "augment_noise": 0.1}
    assert torch.equal(_augment(1, **options), _augment(1, **options))
    assert not torch.equal(_augment(1, **options), _augment(2, **options))


def test_switching_noise_on_keeps_the_shifts_and_factors() -> None:
    quiet = _augment(augment_shift=0.05, augment_scale=0.1)
    noisy = _augment(augment_shift=0.05, augment_scale=0.1, augment_noise=1e-6)
    torch.testing.assert_close(noisy, quiet, rtol=0, atol=1e-4)
