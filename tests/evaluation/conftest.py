"""Fixtures for the evaluation and feature tests: tiny noise-free datasets, quickly trained models.

Datasets are generated in this process straight into the artifact root the workers share
and recorded completed; models are trained by the real gpu_training worker (``train_model``),
so the evaluation actors read exactly what training saves.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from actors.jobs import wait_for_job
from actors.store.datasets import claim_dataset, complete_dataset
from actors.store.db import Database, get_database
from config.settings import get_settings
from pipeline.artifacts import file_sha256

NOISE_OFF = {layer: False for layer in (
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}
# Three classes that clean signals tell apart at a glance.
SEPARABLE = ["sain", "desequilibre", "oilwhirl"]
TINY_CNN = {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2},
            "training": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0}}


def record_dataset(database: Database, dataset_id: str, path: Path, **fields: Any) -> dict:
    """Record a completed dataset row for the file at ``path``."""
    claim_dataset(database, dataset_id, "test-setup", source="generator", name=dataset_id)
    return complete_dataset(database, dataset_id, "test-setup", path=str(path), checksum=file_sha256(path), **fields)


def copy_dataset(database: Database, source: dict, dataset_id: str) -> dict:
    """Record a copy of a dataset's file under another id (same windows, no shared features)."""
    target = get_settings().artifact_root / "datasets" / f"{dataset_id}.h5"
    shutil.copyfile(source["path"], target)
    return record_dataset(database, dataset_id, target, n_records=source["n_records"],
                          class_counts=source["class_counts"], split_counts=source["split_counts"])


@pytest.fixture(scope="session")
def database(pg_url: str) -> Database:
    """The test PostgreSQL database (migrated to head)."""
    return get_database(pg_url)


@pytest.fixture(scope="session")
def tiny_dataset(database: Database) -> dict:
    """Four noise-free records of each of three separable classes (splits 2/1/1 per class)."""
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    config = GeneratorConfig.from_dict(
        {"fault_types": SEPARABLE, "records_per_class": 4, "noise": NOISE_OFF, "seed": 1})
    produced = generate_dataset(config, get_settings().artifact_root / "datasets", "ds-eval-tiny", workers=1)
    return record_dataset(database, "ds-eval-tiny", Path(produced.hdf5_path), n_records=produced.n_records,
                          class_counts=produced.class_counts, split_counts=produced.split_counts)


@pytest.fixture(scope="session")
def trained(workers, tiny_dataset) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """A random forest and a tiny CNN trained on ``tiny_dataset`` by the gpu_training worker."""
    from actors.training import train_model

    messages = {
        "ev-rf": train_model.send(experiment_id="ev-rf", dataset_id=tiny_dataset["dataset_id"], model_key="rf",
                                  model_args={"n_estimators": 20}),
        "ev-cnn": train_model.send(experiment_id="ev-cnn", dataset_id=tiny_dataset["dataset_id"], **TINY_CNN),
    }
    jobs = {}
    for experiment_id, message in messages.items():
        job = wait_for_job(message.message_id, timeout_s=180)
        assert job.state == "succeeded", (experiment_id, job.error_type, job.error_message)
        jobs[experiment_id] = job.result
    return jobs
