"""Optimizer, learning-rate scheduler and device chosen from a ``TrainingConfig``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pipeline.errors import InvalidInput
from pipeline.training.config import TrainingConfig

__all__ = ["current_lr", "make_ema", "make_optimizer", "make_scheduler", "resolve_device", "resolve_precision",
           "step_scheduler"]


def resolve_device(config: TrainingConfig) -> torch.device:
    """Return CUDA for ``auto`` when present, else CPU; refuse ``cuda`` without CUDA."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("training option 'device' is 'cuda' but CUDA is not available here")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def resolve_precision(config: TrainingConfig, device: torch.device) -> str:
    """The arithmetic a run trains in: ``fp32``, ``bf16`` or ``fp16`` (autocast dtypes).

    On CUDA, mixed precision is bf16 where the device supports it (no loss scaling needed),
    else fp16 with a gradient scaler. On CPU it is full precision unless ``bf16`` is asked:
    autocast runs there, but is slower than fp32 on CPUs without bf16 units.

    Raises:
        InvalidInput: fp16 asked on CPU, or bf16 on a CUDA device without it.
    """
    if not config.mixed_precision:
        return "fp32"
    if device.type == "cuda":
        if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise InvalidInput("training option 'precision' is 'bf16' but this CUDA device does not support it")
        if config.precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return config.precision
    if config.precision == "fp16":
        raise InvalidInput("training option 'precision' is 'fp16', which autocast runs on CUDA only; use 'bf16' on CPU")
    return "bf16" if config.precision == "bf16" else "fp32"


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """Return Adam, AdamW or SGD (with momentum) over the model's parameters."""
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def make_ema(model: nn.Module, config: TrainingConfig) -> AveragedModel | None:
    """The moving average of ``model``'s weights and buffers that ``ema_decay`` asks for, or None.

    Buffers are averaged too, so batch-norm statistics match the averaged weights without a
    recalibration pass over the training data.
    """
    if not config.ema_decay:
        return None
    return AveragedModel(model, multi_avg_fn=_warm_average(config.ema_decay), use_buffers=True)


def _warm_average(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """The update of a moving average that starts as the plain mean of the steps so far.

    A plain exponential average starts from the random initial weights and keeps ``decay**n``
    of them after ``n`` steps (68 % after the 193 steps of a first epoch at 0.998, so the
    average scores at chance); the mean of the steps taken carries none of them. It becomes
    the exponential average once ``1 / (1 - decay)`` steps are in. The weight is computed on
    the device from the step count (no host sync), and a resumed run continues from the count
    its checkpoint holds.
    """
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        weight = torch.clamp(1.0 / (n_averaged + 1), min=1.0 - decay)
        for mean, value in zip(averaged, current, strict=True):
            if mean.is_floating_point():
                mean.lerp_(value, weight.to(mean.dtype))
            else:  # counters such as batch norm's num_batches_tracked follow the model
                mean.copy_(value)
    return update


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> object | None:
    """Return the configured scheduler, or ``None`` for ``none``.

    ``plateau`` watches validation accuracy (mode ``max``), the metric early stopping uses.
    """
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=config.scheduler_factor,
            patience=config.scheduler_patience,
            min_lr=config.min_lr,
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=config.min_lr
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.step_gamma
        )
    return None


def step_scheduler(scheduler: object | None, val_accuracy: float) -> None:
    """Advance the scheduler once per epoch (plateau needs the validation metric)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_accuracy)
    elif scheduler is not None:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Return the learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
