"""Fixtures for the evaluation and feature tests: tiny noise-free datasets, quickly trained models.

Datasets are generated in this process straight into the artifact root the workers share
and recorded completed; models are trained by the real gpu_training worker (``train_model``),
so the evaluation actors read exactly what training saves.
"""

from __future__ import annotations

import pytest

from actors.platform.jobs import wait_for_job
from actors.store.db import Database
from tests.records import copy_dataset_file, make_dataset, record_dataset

TINY_CNN = {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2},
            "training": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0}}


def copy_dataset(database: Database, source: dict, dataset_id: str) -> dict:
    """Record a copy of a dataset's file under another id (same windows, no shared features)."""
    return record_dataset(database, dataset_id, copy_dataset_file(source, dataset_id), n_records=source["n_records"],
                          class_counts=source["class_counts"], split_counts=source["split_counts"])


@pytest.fixture(scope="session")
def tiny_dataset(database: Database) -> dict:
    """Four noise-free records of each of three separable classes (splits 2/1/1 per class)."""
    return make_dataset(database, "ds-eval-tiny")


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
