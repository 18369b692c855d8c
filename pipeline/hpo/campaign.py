"""What an HPO campaign searches and how: base model, space, method, trials, metric.

Every model key but ``nas_net`` can be tuned: deep ones train each trial, classical ones
(``rf``, ``svm``, ``gbm``) fit each trial on the 36 features, a cheap trial fanned out the
same way. ``space`` is optional: a key's default comes from ``pipeline.hpo.defaults``.

``parse_campaign`` checks the shape; ``check_campaign`` then checks the space, the base
model arguments and training options against the model and ``TrainingConfig``. A producer
runs both when it sends (``build=False``: no torch); the worker runs them again with every
bound built before anything fans out, so a campaign whose every trial would fail on its
arguments is refused at once instead of after its first wave.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.hpo.defaults import default_space
from pipeline.hpo.space import SearchSpace, parse_space
from pipeline.training.config import TrainingConfig

__all__ = ["DIRECTIONS", "METHODS", "METRICS", "CampaignSpec", "check_campaign", "parse_campaign"]

METHODS = ("bayesian", "random", "grid", "hyperband")
# Each metric is read on the validation split; its natural direction is the default.
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "val_f1_macro": "maximize"}
# Hyperband prunes on a value reported each epoch: macro F1 is measured once, at the end.
_PER_EPOCH_METRICS = ("val_accuracy", "val_loss")
_CLASSICAL_KEYS = ("rf", "svm", "gbm")
DIRECTIONS = ("maximize", "minimize")
MAX_TRIALS = 10_000
# Fixed by the data (num_classes) or by the search itself (hyperband's budget is epochs).
_NOT_SEARCHED = {"num_classes"}


@dataclass(frozen=True)
class CampaignSpec:
    """A validated HPO campaign (``to_dict`` is its JSON form, as stored and sent)."""

    model_key: str
    space: SearchSpace
    method: str = "bayesian"
    n_trials: int = 10
    parallelism: int = 1
    metric: str = "val_accuracy"
    direction: str = "maximize"
    model_args: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def trial_arguments(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (model arguments, training options) of a trial: the base, then its sampled values."""
        model, training = self.space.split(params)
        return {**self.model_args, **model}, {**self.training, **training}

    @property
    def classical(self) -> bool:
        """True when trials fit a classical model on the features (no epochs, no training options)."""
        return self.model_key in _CLASSICAL_KEYS

    @property
    def epochs(self) -> int:
        """Epochs each trial trains for (hyperband's maximum resource; 1 for a classical fit)."""
        return 1 if self.classical else TrainingConfig.from_dict(self.training).epochs

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON."""
        data = dataclasses.asdict(self)
        data["space"] = self.space.to_dict()
        return data


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _count(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def parse_campaign(raw: dict[str, Any]) -> CampaignSpec:
    """Build a ``CampaignSpec`` from JSON and check its shape.

    Raises:
        InvalidInput: unknown method or metric, zero or too many trials, parallelism < 1,
            a bad search space, or a grid with fewer points than trials; hyperband for a
            classical model or on macro F1; training options for a classical model.
    """
    known = {f.name for f in dataclasses.fields(CampaignSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown campaign field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    if not isinstance(raw.get("model_key"), str) or not raw["model_key"]:
        raise InvalidInput("model_key must name a model")
    method = _choice("method", raw.get("method", "bayesian"), METHODS)
    metric = _choice("metric", raw.get("metric", "val_accuracy"), tuple(METRICS))
    direction = _choice("direction", raw.get("direction") or METRICS[metric], DIRECTIONS)
    n_trials = _count("n_trials", raw.get("n_trials", 10), 1, MAX_TRIALS)
    parallelism = _count("parallelism", raw.get("parallelism", 1), 1, 256)
    seed = _count("seed", raw.get("seed", 0), 0, 2**31 - 1)
    for name in ("model_args", "training"):
        if not isinstance(raw.get(name, {}), dict):
            raise InvalidInput(f"{name} must be an object, got {raw[name]!r}")
    space = parse_space(raw["space"] if raw.get("space") is not None else default_space(raw["model_key"]))
    classical = raw["model_key"] in _CLASSICAL_KEYS
    if method == "hyperband" and (classical or metric not in _PER_EPOCH_METRICS):
        why = f"{raw['model_key']!r} fits in one step" if classical else f"{metric!r} is measured once, at the end"
        raise InvalidInput(f"method 'hyperband' prunes trials epoch by epoch, but {why}; choose another method")
    if classical and raw.get("training"):
        raise InvalidInput(f"training options apply to deep models only; {raw['model_key']!r} takes none, "
                           f"got {sorted(raw['training'])}")
    searched = _NOT_SEARCHED | ({"epochs"} if method == "hyperband" else set())
    for name in space.names:
        if name in searched:
            raise InvalidInput(f"parameter {name!r} cannot be searched with method {method!r}")
    if method == "grid" and space.grid_size() < n_trials:
        raise InvalidInput(
            f"the grid has {space.grid_size()} points, fewer than n_trials={n_trials}; "
            "lower n_trials or widen the grid"
        )
    return CampaignSpec(
        model_key=raw["model_key"], space=space, method=method, n_trials=n_trials, parallelism=parallelism,
        metric=metric, direction=direction, model_args=dict(raw.get("model_args", {})),
        training=dict(raw.get("training", {})), seed=seed,
    )


def _resolve_targets(spec: CampaignSpec) -> SearchSpace:
    from pipeline.models.arguments import ARGUMENTS

    model_names = set(ARGUMENTS[spec.model_key])
    training_names = set() if spec.classical else {f.name for f in dataclasses.fields(TrainingConfig)}
    targets = {}
    for param in spec.space.params:
        if param.target is not None:
            names = model_names if param.target == "model" else training_names
            if param.name not in names:
                raise InvalidInput(f"parameter {param.name!r} is not a {param.target} option of {spec.model_key!r}")
            targets[param.name] = param.target
        elif param.name in training_names:
            targets[param.name] = "training"
        elif param.name in model_names:
            targets[param.name] = "model"
        else:
            raise InvalidInput(
                f"parameter {param.name!r} is neither an argument of model {spec.model_key!r} "
                f"({', '.join(sorted(model_names))}) nor a training option ({', '.join(sorted(training_names))})"
            )
    return spec.space.with_targets(targets)


def check_campaign(spec: CampaignSpec, *, build: bool = True) -> CampaignSpec:
    """Check the campaign against its model and ``TrainingConfig``; return it with targets resolved.

    Every parameter is tried at its bounds (every choice of a categorical) on top of the
    base arguments, so a value the model or ``TrainingConfig`` refuses is named now.
    Combinations are not enumerated: a trial whose combination is refused fails alone.
    ``build=False`` checks arguments against their declarations only (no model is built).

    Raises:
        InvalidInput: a key HPO does not tune, a parameter neither the model nor training
            takes, base arguments refused, or a bound of the space refused.
    """
    from pipeline.models.registry import validate_model_args

    default_space(spec.model_key)  # names every key HPO tunes, and why nas_net is not one
    spec = dataclasses.replace(spec, space=_resolve_targets(spec))
    validate_model_args(spec.model_key, spec.model_args, build=build)
    if not spec.classical:
        TrainingConfig.from_dict(spec.training)
    for param in spec.space.params:
        for value in param.extremes():
            model, training = spec.trial_arguments({param.name: value})
            try:
                validate_model_args(spec.model_key, model, build=build)
                if not spec.classical:
                    TrainingConfig.from_dict(training)
            except InvalidInput as exc:
                raise InvalidInput(f"parameter {param.name!r} = {value!r} is refused: {exc}") from None
    return spec
