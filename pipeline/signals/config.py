"""The generator's configuration: what to generate, which noise layers, how to split.

Configs arrive as JSON in messages, so each one converts to and from a JSON-safe dict, and
its hash (sha256 of the canonical JSON) identifies the data it produces together with
``GENERATOR_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.domain import CLASS_KEYS, SEVERITY_BANDS
from pipeline.errors import InvalidInput

__all__ = [
    "GENERATOR_VERSION",
    "AugmentationConfig",
    "GeneratorConfig",
    "NoiseConfig",
    "check_split_ratios",
]

# Bump when the same config would produce different samples (draw order, physics, layout).
GENERATOR_VERSION = "pfd-generator/1.0"

# Physical bounds a config may ask for; outside them the formulas of DOMAIN.md stop making
# sense (negative load, a bearing colder than its oil can flow at, speeds far off nominal).
_SPEED_VARIATION_MAX = 0.5
_LOAD_BOUNDS = (0.0, 100.0)
_TEMPERATURE_BOUNDS = (0.0, 150.0)
_RATIO_TOLERANCE = 1e-6


@dataclass(frozen=True)
class NoiseConfig:
    """One switch per noise layer of DOMAIN.md; all on by default."""

    measurement: bool = True
    emi: bool = True
    pink: bool = True
    drift: bool = True
    quantization: bool = True
    sensor_drift: bool = True
    aliasing: bool = True
    impulses: bool = True

    @classmethod
    def none(cls) -> NoiseConfig:
        """Return a config with every layer off (clean signatures, for tests and plots)."""
        return cls(**{f.name: False for f in fields(cls)})

    def to_dict(self) -> dict[str, bool]:
        """Return the switches as a JSON-safe dict."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class AugmentationConfig:
    """Optional augmentation applied after the noise layers (off by default)."""

    enabled: bool = False
    time_shift: bool = True
    amplitude_scale: bool = True
    noise_injection: bool = True

    def to_dict(self) -> dict[str, bool]:
        """Return the switches as a JSON-safe dict."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}


def _tuple(value: Any) -> Any:
    # JSON gives lists; frozen configs must hold tuples so they hash and compare by value.
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines a generated dataset; record i uses ``seed + i``."""

    fault_types: tuple[str, ...] = CLASS_KEYS
    records_per_class: int = 10
    severities: tuple[str, ...] = tuple(SEVERITY_BANDS)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    speed_variation: float = 0.1
    load_range: tuple[float, float] = (30.0, 100.0)
    temperature_range: tuple[float, float] = (40.0, 80.0)
    severity_ramp_probability: float = 0.30
    transient_probability: float = 0.25
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    seed: int = 42
    split_ratios: tuple[float, float, float] = (0.70, 0.15, 0.15)

    def __post_init__(self) -> None:
        for name in ("fault_types", "severities", "load_range", "temperature_range",
                     "split_ratios"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))

    @property
    def n_records(self) -> int:
        """Total number of records: one block of ``records_per_class`` per fault type."""
        return len(self.fault_types) * self.records_per_class

    def fault_of(self, index: int) -> str:
        """Return the fault key of record ``index`` (records are grouped by class)."""
        return self.fault_types[index // self.records_per_class]

    def validate(self) -> GeneratorConfig:
        """Check every field; raises ``InvalidInput`` naming the first bad one, returns self."""
        _check_keys("fault type", self.fault_types, CLASS_KEYS)
        _check_keys("severity band", self.severities, tuple(SEVERITY_BANDS))
        if not _is_int(self.records_per_class) or self.records_per_class < 1:
            raise InvalidInput(
                f"records_per_class must be an integer >= 1, got {self.records_per_class!r}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise InvalidInput(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.noise, NoiseConfig):
            raise InvalidInput("noise must be a NoiseConfig")
        if not isinstance(self.augmentation, AugmentationConfig):
            raise InvalidInput("augmentation must be an AugmentationConfig")
        _check_number("speed_variation", self.speed_variation, 0.0, _SPEED_VARIATION_MAX)
        _check_range("load_range", self.load_range, *_LOAD_BOUNDS)
        _check_load_is_percent(self.load_range)
        _check_range("temperature_range", self.temperature_range, *_TEMPERATURE_BOUNDS)
        _check_number("severity_ramp_probability", self.severity_ramp_probability, 0.0, 1.0)
        _check_number("transient_probability", self.transient_probability, 0.0, 1.0)
        check_split_ratios(self.split_ratios)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict that ``from_dict`` turns back into an equal config."""
        return {
            "fault_types": list(self.fault_types),
            "records_per_class": int(self.records_per_class),
            "severities": list(self.severities),
            "noise": self.noise.to_dict(),
            "speed_variation": float(self.speed_variation),
            "load_range": [float(v) for v in self.load_range],
            "temperature_range": [float(v) for v in self.temperature_range],
            "severity_ramp_probability": float(self.severity_ramp_probability),
            "transient_probability": float(self.transient_probability),
            "augmentation": self.augmentation.to_dict(),
            "seed": int(self.seed),
            "split_ratios": [float(v) for v in self.split_ratios],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build and validate a config from a (JSON) dict; missing keys take defaults.

        Raises:
            InvalidInput: unknown keys, wrong types or values out of range.
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"generator config must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown generator config keys: {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        values = dict(data)
        values["noise"] = _sub_config(NoiseConfig, values.get("noise"), "noise")
        values["augmentation"] = _sub_config(
            AugmentationConfig, values.get("augmentation"), "augmentation"
        )
        return cls(**values).validate()

    def config_hash(self) -> str:
        """Return the sha256 hex digest of the canonical JSON of ``to_dict()``."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_split_ratios(ratios: Any) -> tuple[float, float, float]:
    """Validate (train, val, test) ratios: three numbers >= 0, train > 0, summing to 1."""
    if not isinstance(ratios, (tuple, list)) or len(ratios) != 3:
        raise InvalidInput(f"split_ratios must be three numbers (train, val, test), got {ratios!r}")
    for name, value in zip(("train", "val", "test"), ratios):
        _check_number(f"split_ratios[{name}]", value, 0.0, 1.0)
    if ratios[0] <= 0:
        raise InvalidInput("split_ratios: the train ratio must be > 0")
    total = float(sum(ratios))
    if abs(total - 1.0) > _RATIO_TOLERANCE:
        raise InvalidInput(f"split_ratios must sum to 1, got {total:g} for {tuple(ratios)!r}")
    return (float(ratios[0]), float(ratios[1]), float(ratios[2]))


def _sub_config(cls: type, value: Any, name: str) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object of booleans, got {value!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInput(
            f"unknown {name} keys: {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    bad = sorted(k for k, v in value.items() if not isinstance(v, bool))
    if bad:
        raise InvalidInput(f"{name} switches must be booleans: {', '.join(bad)}")
    return cls(**value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_keys(what: str, values: Any, valid: tuple[str, ...]) -> None:
    if not isinstance(values, tuple) or not values:
        raise InvalidInput(f"at least one {what} is required; valid: {', '.join(valid)}")
    for value in values:
        if value not in valid:
            raise InvalidInput(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    if len(set(values)) != len(values):
        raise InvalidInput(f"duplicate {what} in {values!r}")


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")


def _check_load_is_percent(load_range: tuple[float, float]) -> None:
    # The old platform took fractions ([0.3, 1.0]); read as percent that is a bearing at
    # 0.3-1 % load. Refused, never reinterpreted: a guess would change data silently.
    if load_range[1] <= 1.0:
        raise InvalidInput(
            f"load_range is in percent of rated load (30-100 by default), got {list(load_range)!r}: "
            f"an upper end of at most 1 % looks like fractions from the old platform; "
            f"write [{load_range[0] * 100:g}, {load_range[1] * 100:g}] for that range"
        )


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(_is_number(v) for v in value)):
        raise InvalidInput(f"{name} must be two numbers (low, high), got {value!r}")
    if not low <= value[0] <= value[1] <= high:
        raise InvalidInput(
            f"{name} must satisfy {low:g} <= low <= high <= {high:g}, got {value!r}"
        )
