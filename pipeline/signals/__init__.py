"""Synthetic journal-bearing vibration records (DOMAIN.md "Generator")."""

from pipeline.signals.config import (
    GENERATOR_VERSION,
    AugmentationConfig,
    GeneratorConfig,
    NoiseConfig,
    check_split_ratios,
)
from pipeline.signals.generator import (
    Record,
    default_workers,
    generate_record,
    generate_records,
    iter_records,
)

__all__ = [
    "GENERATOR_VERSION",
    "AugmentationConfig",
    "GeneratorConfig",
    "NoiseConfig",
    "Record",
    "check_split_ratios",
    "default_workers",
    "generate_record",
    "generate_records",
    "iter_records",
]
