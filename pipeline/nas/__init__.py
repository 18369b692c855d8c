"""Neural architecture search: the architecture space, candidate networks, their cost and training.

The names here load no torch, so a producer can check a NAS campaign when it sends;
``pipeline.nas.model``, ``pipeline.nas.profile`` and ``pipeline.nas.train`` load it.
"""

from pipeline.nas.campaign import NAS_METHODS, NasCampaignSpec, pareto_front, parse_nas_campaign
from pipeline.nas.space import (
    OPS,
    NasSpace,
    arch_from_params,
    arch_hash,
    canonical_arch,
    parse_nas_space,
    sample_arch,
)

__all__ = [
    "NAS_METHODS",
    "OPS",
    "NasCampaignSpec",
    "NasSpace",
    "arch_from_params",
    "arch_hash",
    "canonical_arch",
    "pareto_front",
    "parse_nas_campaign",
    "parse_nas_space",
    "sample_arch",
]
