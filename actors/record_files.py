"""The files dataset and experiment records name, as local files on this host.

Records hold artifact-store keys (``actors.platform.artifact_files``); these turn them into
files the pipeline can open, wherever they were written, and turn a missing or damaged
artifact into the error a job reports (never retried: the record is what it is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.platform.artifact_files import local_file
from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing
from pipeline.errors import DatasetFileError

__all__ = ["dataset_file", "experiment_file"]


def dataset_file(dataset: dict[str, Any], *, checked: bool = False) -> Path:
    """The dataset's HDF5 file; ``checked``: against the checksum its record holds.
    Raises ``DatasetFileError`` when it is missing or does not match."""
    try:
        return local_file(dataset["path"], dataset["checksum"] if checked else None)
    except ArtifactMissing:
        raise DatasetFileError(f"the file of dataset {dataset['dataset_id']!r} is missing: {dataset['path']}") from None
    except ArtifactCorrupt:
        raise DatasetFileError(f"the file of dataset {dataset['dataset_id']!r} does not match its recorded checksum: "
                               f"{dataset['path']}") from None


def experiment_file(experiment: dict[str, Any], field: str = "model_path") -> Path:
    """A file of a completed experiment (``model_path``, checked against ``model_sha256``;
    ``predictions_path``; ``metrics_path``). Raises ``DatasetFileError`` when it is missing
    or does not match."""
    reference = experiment[field]
    try:
        return local_file(reference, experiment.get("model_sha256") if field == "model_path" else None)
    except ArtifactMissing:
        raise DatasetFileError(f"the {field.removesuffix('_path')} file of experiment "
                               f"{experiment['experiment_id']!r} is missing: {reference}") from None
    except ArtifactCorrupt:
        raise DatasetFileError(f"the {field.removesuffix('_path')} file of experiment "
                               f"{experiment['experiment_id']!r} does not match its recorded checksum: {reference}") from None
