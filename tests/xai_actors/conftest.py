"""Explanation actor tests: a tiny generated dataset and a tiny trained CNN, recorded as a
completed experiment, explained by the real Procfile workers of the root conftest.

The model is trained in this process (one epoch of a width-4 ``cnn1d``, a few seconds): the
tests are about the actors, so a poor accuracy is fine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.store.db import Database
from actors.store.experiments import create_experiment
from tests.records import make_dataset, record_trained_experiment

MODEL = {"model_key": "cnn1d", "model_args": {"width": 4, "depth": 1}}
TRAINING = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "device": "cpu"}


@pytest.fixture(scope="session")
def experiment(database: Database) -> dict[str, Any]:
    """A completed experiment: a tiny cnn1d trained one epoch on a tiny dataset, and its dataset."""
    return record_trained_experiment(database, "exp-xai-tiny", make_dataset(database, "ds-xai-tiny"), MODEL, TRAINING)


@pytest.fixture(scope="session")
def pending_experiment(database: Database, experiment: dict[str, Any]) -> str:
    """An experiment that was created but never trained."""
    create_experiment(database, "exp-xai-pending", dataset_id=experiment["dataset_id"], **MODEL,
                      training_config=TRAINING, name="never trained", campaign_id=None)
    return "exp-xai-pending"


def artifact_files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time (ns)."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}
