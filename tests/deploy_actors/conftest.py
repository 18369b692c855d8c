"""Deployment actor tests: a tiny generated dataset and a tiny cnn1d trained one epoch in this process,
recorded as a completed experiment and deployed by the real Procfile workers of the root conftest.

The tests are about the actors, so a poor accuracy is fine; benchmarks are cut to a few runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.store.datasets import claim_dataset
from actors.store.db import Database
from actors.store.experiments import create_experiment
from tests.records import make_dataset, record_trained_experiment

MODEL = {"model_key": "cnn1d", "model_args": {"width": 4, "depth": 1}}
TRAINING = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "device": "cpu"}
# Small enough for two shared cores: a few timed runs, two batch sizes, few calibration windows.
QUICK = {"quantize": {"calibration_windows": 16},
         "benchmark": {"batch_sizes": [1, 8], "warmup": 1, "runs": 3}}


@pytest.fixture(scope="module")
def experiment(database: Database, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A completed experiment (tiny cnn1d, one epoch on a tiny dataset) with its dataset, one per module."""
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    dataset = make_dataset(database, f"ds-dep-{tag}")
    return record_trained_experiment(database, f"exp-dep-{tag}", dataset, MODEL, TRAINING)


@pytest.fixture(scope="module")
def untrained(database: Database) -> str:
    """An experiment that was created but never trained: it has no checkpoint."""
    claim_dataset(database, "ds-dep-untrained", "test-setup", source="generator", name="no file")
    create_experiment(database, "exp-dep-untrained", dataset_id="ds-dep-untrained", **MODEL,
                      training_config=TRAINING, name="never trained", campaign_id=None)
    return "exp-dep-untrained"
