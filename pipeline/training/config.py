"""Training hyper-parameters, kept apart from a model's constructor arguments."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidInput

__all__ = ["DEVICES", "OPTIMIZERS", "PRECISIONS", "SCHEDULERS", "TrainingConfig"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "step", "none")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16")


@dataclass(frozen=True)
class TrainingConfig:
    """How to train a deep model (defaults: the reference Adam, lr 1e-3, batch 64, 60 epochs).

    ``scheduler_patience``/``scheduler_factor`` drive ``plateau`` (on validation accuracy),
    ``step_size``/``step_gamma`` drive ``step``; ``min_lr`` is the floor of ``plateau`` and
    ``cosine``. ``mixed_precision`` with ``precision``: ``auto`` is bf16 on a CUDA device that
    supports it, else fp16 (with a gradient scaler), and full precision on CPU; ``bf16`` also
    runs on CPU (``optim.resolve_precision``). ``ema_decay`` > 0 keeps an exponential moving
    average of the weights (and batch-norm statistics), updated after every step; validation,
    the best checkpoint and the test score then use the average, which is steadier than the
    last step's weights on a noisy plateau (0, the default, turns it off; 0.998 averages over
    about 500 steps). ``label_smoothing`` > 0 trains against targets that give that share of
    the probability to the other classes evenly (``torch.nn.functional.cross_entropy``), so
    windows with no visible fault trace are not pushed to certainty (validation loss stays the
    plain one). ``augment_shift``, ``augment_scale`` and ``augment_noise`` augment each
    training window afresh every epoch (``augment``): a circular shift by up to that fraction
    of the window, an amplitude factor uniform in [1 - a, 1 + a], and Gaussian noise with that
    fraction of the window's own standard deviation, so no single recording of a window can be
    learnt by heart (0, the default, turns each off). ``num_workers`` > 0 loads
    batches in spawned processes (each receives a copy of the arrays); 0 is right for the
    in-memory windows used here.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 60
    scheduler: str = "plateau"
    scheduler_patience: int = 5
    scheduler_factor: float = 0.5
    step_size: int = 20
    step_gamma: float = 0.1
    min_lr: float = 1e-6
    early_stopping_patience: int = 10
    seed: int = 0
    mixed_precision: bool = True
    precision: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    ema_decay: float = 0.0
    label_smoothing: float = 0.0
    augment_shift: float = 0.0
    augment_scale: float = 0.0
    augment_noise: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("scheduler", self.scheduler, SCHEDULERS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_range("lr", self.lr, low=0.0, low_open=True, high=10.0)
        _check_range("weight_decay", self.weight_decay, low=0.0, high=1.0)
        _check_range("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _check_range("batch_size", self.batch_size, low=1, high=65_536)
        _check_range("epochs", self.epochs, low=1, high=10_000)
        _check_range("scheduler_patience", self.scheduler_patience, low=0, high=10_000)
        _check_range(
            "scheduler_factor",
            self.scheduler_factor,
            low=0.0,
            low_open=True,
            high=1.0,
            high_open=True,
        )
        _check_range("step_size", self.step_size, low=1, high=10_000)
        _check_range("step_gamma", self.step_gamma, low=0.0, low_open=True, high=1.0)
        _check_range("min_lr", self.min_lr, low=0.0, high=self.lr)
        _check_range("early_stopping_patience", self.early_stopping_patience, low=1, high=10_000)
        _check_range("seed", self.seed, low=0, high=2**32 - 1)
        _check_range("num_workers", self.num_workers, low=0, high=64)
        _check_range("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        _check_range("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        _check_range("augment_shift", self.augment_shift, low=0.0, high=0.5)
        _check_range("augment_scale", self.augment_scale, low=0.0, high=1.0, high_open=True)
        _check_range("augment_noise", self.augment_noise, low=0.0, high=10.0)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingConfig:
        """Build a config from JSON data; unknown keys, wrong types and bad ranges raise InvalidInput."""
        data = dict(data or {})
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InvalidInput(
                f"unknown training option(s) {', '.join(unknown)}; valid: {', '.join(names)}"
            )
        hints = {field.name: field.type for field in dataclasses.fields(cls)}
        for name, value in data.items():
            if hints[name] == "float" and isinstance(value, int) and not isinstance(value, bool):
                data[name] = float(value)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-safe data (the inverse of ``from_dict``)."""
        return dataclasses.asdict(self)


def _check_type(name: str, value: Any, hint: str) -> None:
    expected = {"float": float, "int": int, "bool": bool, "str": str}[hint]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise InvalidInput(f"training option {name!r} must be {hint}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidInput(
            f"training option {name!r} must be one of {', '.join(choices)}, got {value!r}"
        )


def _check_range(
    name: str,
    value: float,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high or math.isnan(value):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise InvalidInput(
            f"training option {name!r} must be in {left}{low}, {high}{right}, got {value!r}"
        )
