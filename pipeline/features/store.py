"""Feature sets on disk: one compressed ``.npz`` per set, written atomically, no pickles."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_file
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.features.extract import FeatureMatrix

__all__ = ["FORMAT_VERSION", "FeatureSet", "load_feature_set", "save_feature_set"]

FORMAT_VERSION = 1
_KEYS = ("format_version", "values", "names", "labels", "splits", "record_ids", "provenance")


@dataclass(frozen=True)
class FeatureSet:
    """A feature matrix with, per row, its label, split name and source record id."""

    values: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray
    splits: np.ndarray
    record_ids: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(values, labels)`` of the rows in split ``name`` (e.g. ``"train"``)."""
        mask = self.splits == name
        return self.values[mask], self.labels[mask]


def save_feature_set(
    path: str | os.PathLike[str],
    matrix: FeatureMatrix,
    labels: np.ndarray,
    splits: np.ndarray,
    record_ids: np.ndarray,
    provenance: dict[str, Any],
) -> Path:
    """Write a feature set to ``path`` as compressed ``.npz``; readers never see half a file.

    The file is written next to ``path`` under a temporary name and moved into place with
    ``os.replace``, which is atomic on one file system.

    Args:
        path: destination file (the name is used as given; no suffix is added).
        matrix: the features (``values [n, k]`` and ``names``).
        labels: ``[n]`` integer class labels.
        splits: ``[n]`` split names (``"train"``, ``"val"``, ``"test"``).
        record_ids: ``[n]`` integer id of the record each window came from.
        provenance: JSON-serialisable description (dataset id, config, versions).

    Returns:
        The path written.

    Raises:
        InvalidInput: lengths disagree, or provenance is not JSON-serialisable.
    """
    values = np.asarray(matrix.values, dtype=np.float64)
    n = values.shape[0]
    arrays = {
        "labels": np.asarray(labels, dtype=np.int64),
        "splits": np.asarray(splits, dtype=np.str_),
        "record_ids": np.asarray(record_ids, dtype=np.int64),
    }
    for key, array in arrays.items():
        if array.shape != (n,):
            raise InvalidInput(f"{key} must have shape ({n},), got {array.shape}")
    if values.ndim != 2 or values.shape[1] != len(matrix.names):
        raise InvalidInput(f"values {values.shape} do not match {len(matrix.names)} names")
    try:
        provenance_json = json.dumps(provenance, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"provenance is not JSON-serialisable: {exc}") from exc

    target = Path(path)
    with atomic_file(target) as handle:
        np.savez_compressed(
            handle,
            format_version=np.int64(FORMAT_VERSION),
            values=values,
            names=np.asarray(matrix.names, dtype=np.str_),
            provenance=np.asarray(provenance_json),
            **arrays,
        )
    return target


def load_feature_set(path: str | os.PathLike[str]) -> FeatureSet:
    """Read a feature set written by ``save_feature_set`` (never unpickles anything).

    Raises:
        DatasetFileError: the file is missing, not an ``.npz``, lacks a key, or has an
            unknown format version.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise DatasetFileError(f"{path}: not a feature set, missing {missing}")
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise DatasetFileError(
                    f"{path}: feature-set format {version}, expected {FORMAT_VERSION}"
                )
            return FeatureSet(
                values=data["values"],
                names=tuple(str(n) for n in data["names"]),
                labels=data["labels"],
                splits=data["splits"],
                record_ids=data["record_ids"],
                provenance=json.loads(str(data["provenance"])),
            )
    except DatasetFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetFileError(f"cannot read feature set {path}: {exc}") from exc
