"""Search spaces: float, int and categorical parameters, checked before any trial runs.

A space is JSON, one entry per parameter::

    {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": true},
     "width": {"type": "int", "low": 8, "high": 32, "step": 8},
     "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}

Each parameter is either a model constructor argument or a ``TrainingConfig`` field; its
``target`` ("model" or "training") may be given, else it is inferred from the names the
model and ``TrainingConfig`` accept (``resolve_targets``). Parsing is pure Python so a
producer can refuse a bad space when it sends, without loading torch.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidInput

__all__ = ["KINDS", "MAX_GRID_POINTS", "TARGETS", "ParamSpec", "SearchSpace", "parse_space"]

KINDS = ("float", "int", "categorical")
TARGETS = ("model", "training")
MAX_GRID_POINTS = 10_000
# Mixed case: scikit-learn names some arguments so (the SVM's C).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_KEYS = {"type", "low", "high", "log", "step", "choices", "target"}
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: its kind, range or choices, and where its value goes."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()
    target: str | None = None

    def grid_values(self) -> list[Scalar]:
        """Return the finite set of values a grid search visits (choices, or low..high by step)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))  # type: ignore[arg-type]
        if self.step is None:
            raise InvalidInput(
                f"parameter {self.name!r}: a grid search needs a finite set of values; give "
                "'step' for a float range, or make it categorical"
            )
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1  # type: ignore[operator]
        return [round(self.low + i * self.step, 12) for i in range(count)]  # type: ignore[operator]

    def extremes(self) -> list[Scalar]:
        """Return the values that bound this parameter (every choice of a categorical)."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON (the inverse of ``parse_space`` for one entry)."""
        data: dict[str, Any] = {"type": self.kind, "target": self.target}
        if self.kind == "categorical":
            data["choices"] = list(self.choices)
        else:
            data.update(low=self.low, high=self.high, log=self.log, step=self.step)
        return data


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a search, in a fixed (sorted) order."""

    params: tuple[ParamSpec, ...]

    @property
    def names(self) -> list[str]:
        """Parameter names, sorted."""
        return [p.name for p in self.params]

    def grid(self) -> dict[str, list[Scalar]]:
        """Return every parameter's grid values; refuse a grid above ``MAX_GRID_POINTS``."""
        grid = {p.name: p.grid_values() for p in self.params}
        if math.prod(len(values) for values in grid.values()) > MAX_GRID_POINTS:
            raise InvalidInput(f"the grid has more than {MAX_GRID_POINTS} points; narrow the space")
        return grid

    def grid_size(self) -> int:
        """Return the number of points of the grid."""
        return math.prod(len(values) for values in self.grid().values())

    def split(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split sampled values into (model constructor arguments, training options)."""
        model: dict[str, Any] = {}
        training: dict[str, Any] = {}
        for spec in self.params:
            if spec.name in params:
                (model if spec.target == "model" else training)[spec.name] = params[spec.name]
        return model, training

    def with_targets(self, targets: Mapping[str, str]) -> SearchSpace:
        """Return a copy whose parameters carry the given targets."""
        return SearchSpace(tuple(dataclasses.replace(p, target=targets[p.name]) for p in self.params))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the space as JSON."""
        return {p.name: p.to_dict() for p in self.params}


def _number(name: str, key: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"parameter {name!r}: {key!r} must be a finite number, got {value!r}")
    if integer and not float(value).is_integer():
        raise InvalidInput(f"parameter {name!r}: {key!r} must be an integer, got {value!r}")
    return int(value) if integer else float(value)


def _parse_param(name: str, raw: Any) -> ParamSpec:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"parameter name {name!r} must be an identifier")
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"parameter {name!r} must be an object with a 'type', got {raw!r}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidInput(f"parameter {name!r}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS))}")
    kind, target = raw.get("type"), raw.get("target")
    if kind not in KINDS:
        raise InvalidInput(f"parameter {name!r}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    if target is not None and target not in TARGETS:
        raise InvalidInput(f"parameter {name!r}: target must be one of {', '.join(TARGETS)}, got {target!r}")
    if kind == "categorical":
        extra = sorted(set(raw) & {"low", "high", "log", "step"})
        if extra:
            raise InvalidInput(f"parameter {name!r}: a categorical parameter takes 'choices', not {', '.join(extra)}")
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InvalidInput(f"parameter {name!r}: 'choices' must be a non-empty list, got {choices!r}")
        if any(not isinstance(c, Scalar) for c in choices):
            raise InvalidInput(f"parameter {name!r}: choices must be strings, numbers, booleans or null")
        if len({repr(c) for c in choices}) != len(choices):
            raise InvalidInput(f"parameter {name!r}: choices must not repeat, got {choices!r}")
        return ParamSpec(name, kind, choices=tuple(choices), target=target)
    if "choices" in raw:
        raise InvalidInput(f"parameter {name!r}: 'choices' belong to a categorical parameter, not {kind}")
    for key in ("low", "high"):
        if key not in raw:
            raise InvalidInput(f"parameter {name!r}: {kind} needs {key!r}")
    integer = kind == "int"
    low, high = _number(name, "low", raw["low"], integer), _number(name, "high", raw["high"], integer)
    if low > high:
        raise InvalidInput(f"parameter {name!r}: low ({low}) is greater than high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise InvalidInput(f"parameter {name!r}: 'log' must be true or false, got {log!r}")
    if log and low <= 0:
        raise InvalidInput(f"parameter {name!r}: a log scale needs low > 0, got {low}")
    step = raw.get("step")
    if step is not None:
        step = _number(name, "step", step, integer)
        if step <= 0:
            raise InvalidInput(f"parameter {name!r}: 'step' must be positive, got {step}")
        if log:
            raise InvalidInput(f"parameter {name!r}: 'step' and 'log' cannot be combined")
    return ParamSpec(name, kind, low=low, high=high, log=log, step=step, target=target)


def parse_space(raw: Any) -> SearchSpace:
    """Parse and check a JSON search space (structure only; targets come later).

    Raises:
        InvalidInput: not a non-empty object, an unknown type or key, low > high, a log
            scale with low <= 0, empty or repeated choices; the message names the parameter.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidInput("the search space must be a non-empty object of parameters")
    return SearchSpace(tuple(_parse_param(name, raw[name]) for name in sorted(raw)))
