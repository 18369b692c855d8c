"""Import every actor module (after the broker exists: actors bind to it on import)."""

from __future__ import annotations

import importlib

__all__ = ["ACTOR_MODULES", "load_actors"]

ACTOR_MODULES = (
    "actors.control",
    "actors.datasets",
    "actors.deploy",
    "actors.evaluation",
    "actors.features",
    "actors.hpo",
    "actors.maintenance",
    "actors.nas",
    "actors.notifications",
    "actors.quality",
    "actors.training",
    "actors.xai",
)


def load_actors() -> None:
    """Import every actor module so its actors are declared on the current broker."""
    for module in ACTOR_MODULES:
        importlib.import_module(module)
