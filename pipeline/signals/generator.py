"""Generate records: record i is fully determined by ``default_rng(config.seed + i)``.

So any worker can generate any slice; ``iter_records`` spreads chunks of records over every
core (see ``pipeline.signals.parallel``) and yields them in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from pipeline.domain import FS, RECORD_LENGTH, class_index
from pipeline.errors import InvalidInput
from pipeline.signals.conditions import draw_conditions, severity_profile, transient_modulation
from pipeline.signals.config import GENERATOR_VERSION, GeneratorConfig
from pipeline.signals.faults import fault_signature
from pipeline.signals.noise import augment, noise_layers, quantize
from pipeline.signals.parallel import default_workers, ordered_map

__all__ = [
    "Record",
    "check_indices",
    "default_workers",
    "generate_record",
    "generate_records",
    "iter_records",
]

_TIME = np.arange(RECORD_LENGTH) / FS


@dataclass(frozen=True)
class Record:
    """One 5 s record: the signal and what it is.

    ``label`` is the index in ``CLASS_KEYS`` (never in the config's ``fault_types``);
    ``severity`` is mean(s(t)); ``metadata`` is JSON-safe.
    """

    signal: np.ndarray  # float32 [RECORD_LENGTH]
    label: int
    fault: str
    severity: float
    metadata: dict[str, Any]


def _band_of(config: GeneratorConfig, index: int, fault: str) -> str | None:
    # Bands cycle within each class so every band is equally represented; ``sain`` has none.
    if fault == "sain":
        return None
    return config.severities[(index % config.records_per_class) % len(config.severities)]


def generate_record(config: GeneratorConfig, index: int) -> Record:
    """Generate record ``index`` of ``config`` (class ``fault_types[index // records_per_class]``).

    Raises:
        InvalidInput: ``index`` is outside ``[0, config.n_records)``.
    """
    if not 0 <= index < config.n_records:
        raise InvalidInput(f"record index {index} outside [0, {config.n_records})")
    fault = config.fault_of(index)
    band = _band_of(config, index, fault)
    seed = config.seed + index
    # Independent child streams: conditions, signature, base noise, noise layers and
    # augmentation never shift one another when a switch changes.
    cond_rng, fault_rng, base_rng, noise_rng, aug_rng = np.random.default_rng(seed).spawn(5)

    conditions = draw_conditions(
        cond_rng, config.speed_variation, config.load_range, config.temperature_range
    )
    s, s_start, ramped = severity_profile(
        cond_rng, band, config.severity_ramp_probability, RECORD_LENGTH
    )
    m, transient = transient_modulation(cond_rng, config.transient_probability, RECORD_LENGTH)

    x = conditions.amp_base * 0.05 * base_rng.standard_normal(RECORD_LENGTH)
    x += noise_layers(noise_rng, config.noise, _TIME)
    x += fault_signature(fault, fault_rng, conditions, _TIME, s, m)
    if config.noise.quantization:
        x = quantize(x)
    x, augmentation = augment(aug_rng, config.augmentation, x)

    severity = float(s.mean())
    metadata = {
        "fault": fault,
        "label": class_index(fault),
        "index": int(index),
        "seed": int(seed),
        "severity": severity,
        "severity_band": band,
        "severity_start": s_start,
        "severity_ramp": ramped,
        "speed_hz": conditions.speed_hz,
        "speed_factor": conditions.delta,
        "load_percent": conditions.load_percent,
        "temperature_c": conditions.temperature_c,
        "sommerfeld": conditions.sommerfeld,
        "transient": transient,
        "noise": config.noise.to_dict(),
        "augmentation": augmentation,
        "generator_version": GENERATOR_VERSION,
    }
    return Record(
        signal=x.astype(np.float32),
        label=class_index(fault),
        fault=fault,
        severity=severity,
        metadata=metadata,
    )


def _generate_chunk(config: GeneratorConfig, indices: Sequence[int]) -> list[Record]:
    return [generate_record(config, i) for i in indices]


def check_indices(config: GeneratorConfig, indices: Iterable[int]) -> list[int]:
    """Return ``indices`` as a list of ints; raises ``InvalidInput`` for one out of range."""
    checked = [int(i) for i in indices]
    bad = [i for i in checked if not 0 <= i < config.n_records]
    if bad:
        raise InvalidInput(f"record index {bad[0]} outside [0, {config.n_records})")
    return checked


def iter_records(
    config: GeneratorConfig, indices: Iterable[int], workers: int | None = None
) -> Iterator[Record]:
    """Yield the records of ``indices`` in order, generated across ``workers`` processes.

    ``workers`` defaults to every core; with 1 (or a handful of records) generation stays
    in this process. Memory stays bounded however many records are asked for.
    """
    config.validate()
    chunks = check_indices(config, indices)
    yield from ordered_map(partial(_generate_chunk, config), chunks, workers=workers)


def generate_records(
    config: GeneratorConfig, indices: Iterable[int], workers: int | None = None
) -> list[Record]:
    """Return the records of ``indices`` in order, generated in parallel (see ``iter_records``)."""
    return list(iter_records(config, indices, workers=workers))
