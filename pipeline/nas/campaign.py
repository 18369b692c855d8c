"""A NAS campaign: its space, sampling method, budget, training options; and the Pareto front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.nas.space import NasSpace, parse_nas_space
from pipeline.training.config import TrainingConfig

__all__ = ["NAS_METHODS", "NasCampaignSpec", "pareto_front", "parse_nas_campaign"]

# "random" draws uniformly; "tpe" is Optuna's TPE over the architecture parameters.
NAS_METHODS = ("random", "tpe")
MAX_CANDIDATES = 1_000


@dataclass(frozen=True)
class NasCampaignSpec:
    """A validated NAS campaign; candidates are scored on validation accuracy (maximised)."""

    space: NasSpace
    method: str = "random"
    n_candidates: int = 8
    parallelism: int = 1
    training: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    register_best: bool = True
    metric: str = "val_accuracy"
    direction: str = "maximize"

    @property
    def n_trials(self) -> int:
        """The campaign's trials are its candidates."""
        return self.n_candidates

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON."""
        data = dataclasses.asdict(self)
        data["space"] = self.space.to_dict()
        return data


def parse_nas_campaign(raw: dict[str, Any]) -> NasCampaignSpec:
    """Build and check a ``NasCampaignSpec`` from JSON.

    Raises:
        InvalidInput: unknown field or method, no candidates, bad space or training options.
    """
    known = {"space", "method", "n_candidates", "parallelism", "training", "seed", "register_best"}
    unknown = sorted(set(raw) - known - {"metric", "direction"})
    if unknown:
        raise InvalidInput(f"unknown NAS campaign field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    method = raw.get("method", "random")
    if method not in NAS_METHODS:
        raise InvalidInput(f"method must be one of {', '.join(NAS_METHODS)}, got {method!r}")
    for name, high in (("n_candidates", MAX_CANDIDATES), ("parallelism", 256), ("seed", 2**31 - 1)):
        value = raw.get(name, {"n_candidates": 8, "parallelism": 1, "seed": 0}[name])
        low = 0 if name == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not isinstance(raw.get("register_best", True), bool):
        raise InvalidInput("register_best must be true or false")
    training = raw.get("training", {})
    if not isinstance(training, dict):
        raise InvalidInput(f"training must be an object, got {training!r}")
    TrainingConfig.from_dict(training)
    return NasCampaignSpec(
        space=parse_nas_space(raw.get("space", {})), method=method, n_candidates=raw.get("n_candidates", 8),
        parallelism=raw.get("parallelism", 1), training=dict(training), seed=raw.get("seed", 0),
        register_best=raw.get("register_best", True),
    )


def pareto_front(candidates: list[dict[str, Any]], *, accuracy: str = "val_accuracy",
                 size: str = "parameter_count") -> list[dict[str, Any]]:
    """Return the candidates no other beats on both accuracy (higher) and size (lower), smallest first."""
    scored = [c for c in candidates if c.get(accuracy) is not None and c.get(size) is not None]
    front = [
        c for c in scored
        if not any(o[accuracy] >= c[accuracy] and o[size] <= c[size]
                   and (o[accuracy] > c[accuracy] or o[size] < c[size]) for o in scored)
    ]
    return sorted(front, key=lambda c: (c[size], -c[accuracy]))
