"""What the ML tests record before they run: tiny noise-free datasets and a tiny trained model.

Datasets are generated in the test process straight into the artifact root the workers share
and recorded completed, exactly as ``generate_dataset`` records them; a model trained here is
recorded as a completed experiment, so the actors under test read what training saves.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from actors.store.datasets import claim_dataset, complete_dataset
from actors.store.db import Database
from actors.store.experiments import claim_experiment, complete_experiment
from config.settings import get_settings
from pipeline.artifacts import file_sha256

__all__ = ["NOISE_OFF", "SEPARABLE", "artifact", "copy_dataset_file", "make_dataset", "record_dataset",
           "record_trained_experiment", "written"]

NOISE_OFF = {layer: False for layer in (
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}
# Three classes that clean signals tell apart at a glance; chance is 1/3.
SEPARABLE = ["sain", "desequilibre", "oilwhirl"]


def artifact(reference: str) -> str:
    """The local file a record's artifact key (or old absolute path) names, as the actors read it."""
    from actors.platform.artifact_files import local_file

    return str(local_file(reference))


def written(key: str) -> Path:
    """Where the worker that wrote ``key`` left the file: the suite's workers share this
    machine's artifact root, whichever store they publish to (``make test-s3``)."""
    return get_settings().artifact_root / key


def record_dataset(database: Database, dataset_id: str, path: Path, *, status: str = "completed", **fields: Any) -> dict:
    """Record a dataset row for ``path`` (its checksum taken now unless given); ``status="running"`` leaves it claimed."""
    claim_dataset(database, dataset_id, "test-setup", source="generator", name=dataset_id)
    if status != "completed":
        return {"dataset_id": dataset_id}
    fields.setdefault("checksum", file_sha256(path))
    return complete_dataset(database, dataset_id, "test-setup", path=str(path), **fields)


def make_dataset(database: Database, dataset_id: str, *, fault_types: list[str] | None = None,
                 records_per_class: int = 4, seed: int = 1) -> dict:
    """Generate a noise-free dataset (by default the separable classes) in the artifact root and record it."""
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    config = GeneratorConfig.from_dict({"fault_types": fault_types or SEPARABLE, "records_per_class": records_per_class,
                                        "noise": NOISE_OFF, "seed": seed})
    produced = generate_dataset(config, get_settings().artifact_root / "datasets", dataset_id, workers=1)
    return record_dataset(
        database, dataset_id, Path(produced.hdf5_path), n_records=produced.n_records,
        class_counts=produced.class_counts, split_counts=produced.split_counts, config_hash=produced.config_hash,
    )


def copy_dataset_file(source: dict, dataset_id: str) -> Path:
    """Copy a dataset's file under a new name in the artifact root."""
    target = get_settings().artifact_root / "datasets" / f"{dataset_id}.h5"
    shutil.copyfile(source["path"], target)
    return target


def record_trained_experiment(database: Database, experiment_id: str, dataset: dict[str, Any],
                              model: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` in this process (one thread) and record it as a completed experiment."""
    import torch

    from pipeline.training import load_training_data
    from pipeline.training.loop import train_deep

    torch.set_num_threads(1)
    directory = get_settings().artifact_root / "experiments" / experiment_id
    spec = {"dataset_id": dataset["dataset_id"], **model, "training_config": training, "name": "tiny",
            "campaign_id": None}
    claim_experiment(database, experiment_id, "test-setup", spec=spec, checkpoint_dir=str(directory))
    result = train_deep(model["model_key"], model["model_args"], training, load_training_data(dataset["path"]),
                        directory)
    summary = complete_experiment(
        database, experiment_id, "test-setup", model_args=result.model_args, training_config=result.config,
        epochs_run=result.epochs_run, best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
        metrics=result.test, model_path=result.model_path, model_sha256=file_sha256(result.model_path),
        parameter_count=result.parameter_count, duration_s=result.duration_s,
    )
    return {**summary, "dataset": dataset}
