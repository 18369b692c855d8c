"""Per-record operating conditions, severity profile s(t) and transient modulation m(t).

Formulas are DOMAIN.md's, verbatim. Draw order is fixed here (changing it changes every
record, so it bumps ``GENERATOR_VERSION``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.domain import OMEGA0_HZ, SEVERITY_BANDS

__all__ = [
    "TRANSIENTS",
    "Conditions",
    "draw_conditions",
    "severity_profile",
    "transient_modulation",
]

TRANSIENTS: tuple[str, ...] = ("speed_ramp", "load_step", "thermal_expansion")

_SOMMERFELD_CLIP = (0.05, 0.5)
_RAMP_RISE = 0.3


@dataclass(frozen=True)
class Conditions:
    """Operating conditions of one record (DOMAIN.md "Generator (per record)")."""

    delta: float  # speed factor δ
    speed_hz: float  # Ω
    load_percent: float
    load_factor: float
    temperature_c: float
    temp_factor: float
    operating_factor: float
    amp_base: float
    sommerfeld: float
    physics_factor: float

    @property
    def omega(self) -> float:
        """Angular shaft speed ω = 2πΩ in rad/s."""
        return 2.0 * math.pi * self.speed_hz


def draw_conditions(
    rng: np.random.Generator,
    speed_variation: float,
    load_range: tuple[float, float],
    temperature_range: tuple[float, float],
) -> Conditions:
    """Draw δ, load and temperature and derive every factor DOMAIN.md defines from them."""
    delta = 1.0 + rng.uniform(-speed_variation, speed_variation)
    speed_hz = delta * OMEGA0_HZ
    load_percent = rng.uniform(*load_range)
    load_factor = 0.3 + 0.7 * load_percent / 100.0
    temperature_c = rng.uniform(*temperature_range)
    temp_factor = 0.9 + 0.2 * (temperature_c - 40.0) / 40.0
    operating_factor = load_factor * temp_factor
    amp_base = (0.2 + 0.1 * rng.uniform()) * operating_factor
    sommerfeld = 0.15 * math.exp(-0.03 * (temperature_c - 60.0)) * delta / load_factor
    sommerfeld = min(max(sommerfeld, _SOMMERFELD_CLIP[0]), _SOMMERFELD_CLIP[1])
    return Conditions(
        delta=float(delta),
        speed_hz=float(speed_hz),
        load_percent=float(load_percent),
        load_factor=float(load_factor),
        temperature_c=float(temperature_c),
        temp_factor=float(temp_factor),
        operating_factor=float(operating_factor),
        amp_base=float(amp_base),
        sommerfeld=float(sommerfeld),
        physics_factor=float(math.sqrt(sommerfeld / 0.15)),
    )


def severity_profile(
    rng: np.random.Generator, band: str | None, ramp_probability: float, n: int
) -> tuple[np.ndarray, float, bool]:
    """Return (s(t), starting severity, ramped?) for a band; ``None`` (``sain``) gives 1.0.

    With probability ``ramp_probability`` s ramps linearly from s to min(1, s + 0.3).
    Both draws are always made so the stream stays aligned whatever the band.
    """
    low, high = SEVERITY_BANDS[band] if band is not None else (1.0, 1.0)
    start = float(rng.uniform(low, high))
    ramped = bool(rng.uniform() < ramp_probability) and band is not None
    if ramped:
        return np.linspace(start, min(1.0, start + _RAMP_RISE), n), start, True
    return np.full(n, start), start, False


def transient_modulation(
    rng: np.random.Generator, probability: float, n: int
) -> tuple[np.ndarray, str | None]:
    """Return (m(t), transient name or None); m is 1 everywhere when no transient occurs.

    speed_ramp: 0.85 -> 1.15 linearly over samples 20-60 %, 1 elsewhere (the ramp is the
    event; before and after it the machine runs at its drawn speed).
    load_step: 0.7 before 40 % of the record, 1.0 after.
    thermal_expansion: 0.9 + 0.2·(1 - exp(-n / (0.3 N))).
    """
    happens = rng.uniform() < probability
    kind = TRANSIENTS[int(rng.integers(len(TRANSIENTS)))]
    if not happens:
        return np.ones(n), None
    if kind == "speed_ramp":
        m = np.ones(n)
        start, stop = int(0.2 * n), int(0.6 * n)
        m[start:stop] = np.linspace(0.85, 1.15, stop - start)
    elif kind == "load_step":
        m = np.where(np.arange(n) < int(0.4 * n), 0.7, 1.0)
    else:
        m = 0.9 + 0.2 * (1.0 - np.exp(-np.arange(n) / (0.3 * n)))
    return m, kind
