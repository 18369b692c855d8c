"""Deployment actor tests: a tiny generated dataset and a tiny cnn1d trained one epoch in this process,
recorded as a completed experiment and deployed by the real Procfile workers of the root conftest.

The tests are about the actors, so a poor accuracy is fine; benchmarks are cut to a few runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.store.datasets import claim_dataset, complete_dataset
from actors.store.db import Database, get_database
from actors.store.experiments import claim_experiment, complete_experiment, create_experiment
from config.settings import get_settings
from pipeline.artifacts import file_sha256

NOISE_OFF = {layer: False for layer in (
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}
MODEL = {"model_key": "cnn1d", "model_args": {"width": 4, "depth": 1}}
TRAINING = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "device": "cpu"}
# Small enough for two shared cores: a few timed runs, two batch sizes, few calibration windows.
QUICK = {"quantize": {"calibration_windows": 16},
         "benchmark": {"batch_sizes": [1, 8], "warmup": 1, "runs": 3}}


@pytest.fixture(scope="session")
def database(pg_url: str) -> Database:
    """The test PostgreSQL database (migrated to head)."""
    return get_database(pg_url)


def _dataset(database: Database, dataset_id: str) -> dict[str, Any]:
    """Generate four noise-free records of three classes (splits 2/1/1 per class) and record them."""
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    config = GeneratorConfig.from_dict({"fault_types": ["sain", "desequilibre", "oilwhirl"],
                                        "records_per_class": 4, "noise": NOISE_OFF, "seed": 1})
    produced = generate_dataset(config, get_settings().artifact_root / "datasets", dataset_id, workers=1)
    claim_dataset(database, dataset_id, "test-setup", source="generator", name=dataset_id)
    return complete_dataset(
        database, dataset_id, "test-setup", path=produced.hdf5_path, checksum=file_sha256(produced.hdf5_path),
        n_records=produced.n_records, class_counts=produced.class_counts, split_counts=produced.split_counts,
    )


@pytest.fixture(scope="module")
def experiment(database: Database, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A completed experiment (tiny cnn1d, one epoch on a tiny dataset) with its dataset, one per module."""
    import torch

    from pipeline.training import load_training_data
    from pipeline.training.loop import train_deep

    torch.set_num_threads(1)
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    dataset = _dataset(database, f"ds-dep-{tag}")
    experiment_id = f"exp-dep-{tag}"
    directory = get_settings().artifact_root / "experiments" / experiment_id
    spec = {"dataset_id": dataset["dataset_id"], **MODEL, "training_config": TRAINING, "name": "tiny",
            "campaign_id": None}
    claim_experiment(database, experiment_id, "test-setup", spec=spec, checkpoint_dir=str(directory))
    result = train_deep(MODEL["model_key"], MODEL["model_args"], TRAINING, load_training_data(dataset["path"]),
                        directory)
    summary = complete_experiment(
        database, experiment_id, "test-setup", model_args=result.model_args, training_config=result.config,
        epochs_run=result.epochs_run, best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
        metrics=result.test, model_path=result.model_path, model_sha256=file_sha256(result.model_path),
        parameter_count=result.parameter_count, duration_s=result.duration_s,
    )
    return {**summary, "dataset": dataset}


@pytest.fixture(scope="module")
def untrained(database: Database) -> str:
    """An experiment that was created but never trained: it has no checkpoint."""
    claim_dataset(database, "ds-dep-untrained", "test-setup", source="generator", name="no file")
    create_experiment(database, "exp-dep-untrained", dataset_id="ds-dep-untrained", **MODEL,
                      training_config=TRAINING, name="never trained", campaign_id=None)
    return "exp-dep-untrained"
