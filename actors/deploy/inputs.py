"""What a deployment stage reads and records: the deployable experiment, a split's windows, variant entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from actors.platform.artifact_files import publish
from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing
from actors.record_files import dataset_file, experiment_file, variant_file
from actors.store.datasets import get_dataset
from actors.store.db import Database
from actors.store.experiments import get_experiment
from pipeline.artifacts import file_sha256
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.models import is_deep

__all__ = ["deployable_experiment", "original_variant", "split_windows", "variant_entry",
           "variant_present"]


def deployable_experiment(database: Database, experiment_id: str) -> dict[str, Any]:
    """A completed deep-model experiment, with ``model_file`` (its checkpoint) and ``dataset_path``
    (its dataset's file) on this host; ``model_path`` stays the key its record holds.

    Raises:
        InvalidInput: no checkpoint file, or not a deep model.
        DatasetFileError: the dataset's file is missing.
    """
    experiment = get_experiment(database, experiment_id)
    path = experiment["model_path"]
    if experiment["status"] != "completed" or not path:
        raise InvalidInput(f"experiment {experiment_id!r} has no checkpoint to deploy "
                           f"(status {experiment['status']}, model file {path or 'none'})")
    if not is_deep(experiment["model_key"]):
        raise InvalidInput(f"experiment {experiment_id!r} trained {experiment['model_key']!r}: only deep models deploy")
    try:
        model = experiment_file(experiment)
    except DatasetFileError as exc:
        raise InvalidInput(f"experiment {experiment_id!r} has no checkpoint to deploy: {exc}") from None
    dataset_path = str(dataset_file(get_dataset(database, experiment["dataset_id"])))
    return {**experiment, "model_file": str(model), "dataset_path": dataset_path}


def split_windows(experiment: dict[str, Any], split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split's 1 s windows and labels; at most ``limit`` of them, spread evenly (so every class)."""
    from pipeline.datasets.hdf5 import read_windows

    windows, labels, _ = read_windows(experiment["dataset_path"], split)
    if limit is not None and len(windows) > limit:
        rows = np.linspace(0, len(windows) - 1, limit).round().astype(np.int64)
        windows, labels = windows[rows], labels[rows]
    return windows, labels


def variant_entry(name: str, kind: str, path: str, metrics: dict[str, Any], sha256: str | None = None) -> dict[str, Any]:
    """A variant as the deployment records it: the key of its file (written under the artifact
    root, published here), size, checksum and metrics."""
    sha256 = sha256 or file_sha256(path)
    return {"name": name, "kind": kind, "path": publish(path, sha256), "size": Path(path).stat().st_size,
            "sha256": sha256, "metrics": metrics}


def original_variant(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment's own checkpoint (stored already) as the ``torch_fp32`` variant, with its test accuracy."""
    metrics = {"model_key": experiment["model_key"], "test_accuracy": experiment["test_accuracy"]}
    return {"name": "torch_fp32", "kind": "torch", "path": experiment["model_path"],
            "size": Path(experiment["model_file"]).stat().st_size, "sha256": experiment["model_sha256"],
            "metrics": metrics}


def variant_present(variant: dict[str, Any]) -> bool:
    """Whether a recorded variant's file is still there, whole."""
    try:
        variant_file(variant)
    except (ArtifactMissing, ArtifactCorrupt):
        return False
    return True
