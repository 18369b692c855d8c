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

__all__ = ["dataset_file", "experiment_file", "variant_file"]


def dataset_file(dataset: dict[str, Any], *, checked: bool = False) -> Path:
    """The dataset's HDF5 file; ``checked``: against the checksum its record holds.
    Raises ``DatasetFileError`` when it is missing or does not match."""
    return _record_file(dataset["path"], dataset["checksum"] if checked else None,
                        f"the file of dataset {dataset['dataset_id']!r}")


def experiment_file(experiment: dict[str, Any], field: str = "model_path") -> Path:
    """A file of a completed experiment (``model_path``, checked against ``model_sha256``;
    ``predictions_path``; ``metrics_path``). Raises ``DatasetFileError`` when it is missing
    or does not match."""
    return _record_file(experiment[field], experiment.get("model_sha256") if field == "model_path" else None,
                        f"the {field.removesuffix('_path')} file of experiment {experiment['experiment_id']!r}")


def variant_file(variant: dict[str, Any]) -> str:
    """A deployment's recorded variant as a file on this host (``ArtifactMissing`` /
    ``ArtifactCorrupt``: whether a variant is gone is the caller's to judge)."""
    return str(local_file(variant["path"], variant.get("sha256")))


def _record_file(reference: str, sha256: str | None, what: str) -> Path:
    """``reference`` as a local file, its absence or damage reported as ``what`` is."""
    try:
        return local_file(reference, sha256)
    except ArtifactMissing:
        raise DatasetFileError(f"{what} is missing: {reference}") from None
    except ArtifactCorrupt:
        raise DatasetFileError(f"{what} does not match its recorded checksum: {reference}") from None
