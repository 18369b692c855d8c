"""Fault signatures of the 11 classes, exactly as DOMAIN.md writes them.

Each signature takes the record's conditions, time axis t (s), severity profile s(t) and
transient modulation m(t) and returns a float64 array. Where DOMAIN.md is silent the choice
is written on the function. Every random draw comes from the ``rng`` passed in, in a fixed
order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.domain import FS
from pipeline.signals.conditions import Conditions

__all__ = ["SIGNATURES", "bursts", "fault_signature", "impacts"]

_TWO_PI = 2.0 * np.pi
_BURST_LENGTH = 163  # 8 ms at 20,480 Hz
_BURST_CARRIER_HZ = (1500.0, 2500.0)
_BURST_DECAY = 100.0  # e^(-100 t), t in s from the burst's start
_BURST_WINDOW = np.hanning(_BURST_LENGTH)
_BURST_TIME = np.arange(_BURST_LENGTH) / FS


def bursts(rng: np.random.Generator, count: int, amplitude: float, n: int) -> np.ndarray:
    """Cavitation bursts: ``count`` 8 ms Hann-windowed decaying tones at 1.5-2.5 kHz."""
    out = np.zeros(n)
    positions = rng.integers(0, n - _BURST_LENGTH + 1, size=count)
    carriers = rng.uniform(*_BURST_CARRIER_HZ, size=count)
    shapes = (amplitude * np.sin(_TWO_PI * carriers[:, None] * _BURST_TIME)
              * np.exp(-_BURST_DECAY * _BURST_TIME) * _BURST_WINDOW)
    # add.at, not fancy assignment: two bursts may overlap and must add up.
    np.add.at(out, positions[:, None] + np.arange(_BURST_LENGTH), shapes)
    return out


def impacts(
    rng: np.random.Generator, count: int, length: int, amplitude: float, decay: float,
    n: int, noisy: bool,
) -> np.ndarray:
    """``count`` impacts of ``length`` samples: amplitude·e^(-decay·k), ×N(0,1) if noisy."""
    out = np.zeros(n)
    positions = rng.integers(0, n - length + 1, size=count)
    shapes = np.broadcast_to(amplitude * np.exp(-decay * np.arange(length)), (count, length))
    if noisy:
        shapes = shapes * rng.standard_normal((count, length))
    np.add.at(out, positions[:, None] + np.arange(length), shapes)
    return out


def _phases(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0.0, _TWO_PI, size=count)


def _sub_synchronous(rng: np.random.Generator, c: Conditions, t: np.ndarray) -> np.ndarray:
    # Looseness' sub-synchronous line f = (0.43 + 0.05 U)·Ω, shared with mixed_cavit_jeu.
    f = (0.43 + 0.05 * rng.uniform()) * c.speed_hz
    return np.sin(_TWO_PI * f * t)


def _sain(rng, c, t, s, m):
    return np.zeros_like(t)


def _desalignement(rng, c, t, s, m):
    p2, p3 = _phases(rng, 2)
    w = c.omega
    return s * (0.35 * np.sin(2 * w * t + p2) + 0.20 * np.sin(3 * w * t + p3)) * m


def _desequilibre(rng, c, t, s, m):
    (p1,) = _phases(rng, 1)
    return s * 0.5 * c.load_factor * np.sin(c.omega * t + p1) * c.delta**2 * m


def _jeu(rng, c, t, s, m):
    sub = _sub_synchronous(rng, c, t)
    w = c.omega
    return s * (0.25 * c.temp_factor * sub + 0.18 * np.sin(w * t)
                + 0.10 * np.sin(2 * w * t)) * m


def _stick_slip(rng, c, t):
    f = 2.0 + 3.0 * rng.uniform()
    return c.temp_factor * (0.3 / c.sommerfeld) * np.sin(_TWO_PI * f * t)


def _lubrification(rng, c, t, s, m):
    mean_s = float(s.mean())
    out = s * 0.30 * _stick_slip(rng, c, t) * m
    count = int(1 + 3 * mean_s)
    return out + impacts(rng, count, 20, 0.5 * mean_s, 0.4, t.size, noisy=True)


def _cavitation(rng, c, t, s, m):
    mean_s = float(s.mean())
    return bursts(rng, int(2 + 5 * mean_s), 0.6 * mean_s, t.size)


def _wear_modulation(rng, t):
    f_w = rng.uniform(0.5, 2.0)
    return 1.0 + 0.3 * np.sin(_TWO_PI * f_w * t)


def _usure(rng, c, t, s, m):
    w = c.omega
    noise = 0.25 * c.operating_factor * c.physics_factor * rng.standard_normal(t.size)
    harmonics = 0.12 * (np.sin(w * t) + 0.5 * np.sin(2 * w * t))
    return s * (noise + harmonics) * _wear_modulation(rng, t) * m


def _oilwhirl(rng, c, t, s, m):
    f = (0.42 + 0.06 * rng.uniform()) * c.speed_hz
    carrier = np.sin(_TWO_PI * f * t) * (1.0 + 0.2 * np.sin(_TWO_PI * (f / 2.0) * t))
    return s * (0.40 / np.sqrt(c.sommerfeld)) * carrier * m


def _mixed_misalign_imbalance(rng, c, t, s, m):
    p1, p2, p3 = _phases(rng, 3)
    w = c.omega
    mean_s = float(s.mean())
    lines = (0.25 * np.sin(2 * w * t + p2) + 0.15 * np.sin(3 * w * t + p3)
             + 0.35 * c.load_factor * c.delta**2 * np.sin(w * t + p1))
    return lines * mean_s * s * m


def _mixed_wear_lube(rng, c, t, s, m):
    """Wear + lubrication.

    DOMAIN.md names the parts and their weights only; their shapes follow the pure classes:
    wear = 0.18·operating·physics·N(0,1)·(1 + 0.3 sin 2π f_w t) (usure's broadband part),
    asperity = 0.08·(sin ωt + 0.5 sin 2ωt) (usure's synchronous part), stick-slip =
    0.20·temp·(0.3/S)·sin 2π f t, f = 2-5 Hz (lubrification's); impacts carry no N(0,1)
    because DOMAIN.md writes none for them (unlike lubrification's).
    """
    w = c.omega
    mean_s = float(s.mean())
    wear = (0.18 * c.operating_factor * c.physics_factor * rng.standard_normal(t.size)
            * _wear_modulation(rng, t))
    asperity = 0.08 * (np.sin(w * t) + 0.5 * np.sin(2 * w * t))
    stick_slip = 0.20 * _stick_slip(rng, c, t)
    out = (wear + asperity + stick_slip) * mean_s * s * m
    count = int(2 + 3 * mean_s)
    return out + impacts(rng, count, 10, 0.4 * mean_s, 0.5, t.size, noisy=False)


def _mixed_cavit_jeu(rng, c, t, s, m):
    """Cavitation + looseness; the bursts' amplitude is 0.5 as written (not × mean(s))."""
    mean_s = float(s.mean())
    out = bursts(rng, int(3 + 4 * mean_s), 0.5, t.size)
    sub = _sub_synchronous(rng, c, t)
    looseness = 0.22 * c.temp_factor * sub + 0.15 * np.sin(c.omega * t)
    return out + looseness * mean_s * s * m


Signature = Callable[[np.random.Generator, Conditions, np.ndarray, np.ndarray, np.ndarray],
                     np.ndarray]

SIGNATURES: dict[str, Signature] = {
    "sain": _sain,
    "desalignement": _desalignement,
    "desequilibre": _desequilibre,
    "jeu": _jeu,
    "lubrification": _lubrification,
    "cavitation": _cavitation,
    "usure": _usure,
    "oilwhirl": _oilwhirl,
    "mixed_misalign_imbalance": _mixed_misalign_imbalance,
    "mixed_wear_lube": _mixed_wear_lube,
    "mixed_cavit_jeu": _mixed_cavit_jeu,
}


def fault_signature(
    fault: str, rng: np.random.Generator, conditions: Conditions, t: np.ndarray,
    s: np.ndarray, m: np.ndarray,
) -> np.ndarray:
    """Return the signature of ``fault`` (a class key) for one record, float64 [len(t)]."""
    return SIGNATURES[fault](rng, conditions, t, s, m)
