"""Optimizer, learning-rate scheduler and device chosen from a ``TrainingConfig``."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import InvalidInput
from pipeline.training.config import TrainingConfig

__all__ = ["current_lr", "make_optimizer", "make_scheduler", "resolve_device", "step_scheduler"]


def resolve_device(config: TrainingConfig) -> torch.device:
    """Return CUDA for ``auto`` when present, else CPU; refuse ``cuda`` without CUDA."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("training option 'device' is 'cuda' but CUDA is not available here")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


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
