"""Hyperparameter search: spaces, campaign specs, Optuna studies and single trials.

The names here load neither torch nor Optuna, so a producer can check a campaign when it
sends. ``pipeline.hpo.study`` (Optuna) and ``pipeline.hpo.trial`` (torch) are imported
where they are needed.
"""

from pipeline.hpo.campaign import (
    DIRECTIONS,
    METHODS,
    METRICS,
    CampaignSpec,
    check_campaign,
    parse_campaign,
)
from pipeline.hpo.space import KINDS, ParamSpec, SearchSpace, parse_space

__all__ = [
    "DIRECTIONS",
    "KINDS",
    "METHODS",
    "METRICS",
    "CampaignSpec",
    "ParamSpec",
    "SearchSpace",
    "check_campaign",
    "parse_campaign",
    "parse_space",
]
