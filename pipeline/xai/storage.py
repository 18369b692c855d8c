"""An explanation on disk: one compressed ``.npz`` (attributions + JSON record), no pickle.

The attributions are stored as float32 (half the size; far below any method's own error);
the record is the JSON of ``Explanation.to_dict()`` in a 0-d unicode array, which
``np.load(allow_pickle=False)`` reads back.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from pipeline.artifacts import atomic_file
from pipeline.errors import ExplanationFileError
from pipeline.xai.result import Explanation

__all__ = ["FORMAT", "load_explanation", "save_explanation"]

FORMAT = "pfd-explanation/1"


def save_explanation(path: str | os.PathLike[str], explanation: Explanation) -> Path:
    """Write ``explanation`` to ``path`` (``.npz``) atomically; return the path."""
    record = {"format": FORMAT, **explanation.to_dict()}
    target = Path(path)
    with atomic_file(target) as handle:
        np.savez_compressed(
            handle,
            attributions=np.asarray(explanation.attributions, dtype=np.float32),
            record=np.array(json.dumps(record)),
        )
    return target


def load_explanation(path: str | os.PathLike[str]) -> Explanation:
    """Read an explanation written by ``save_explanation`` (attributions as float64).

    Raises:
        ExplanationFileError: missing, corrupt or foreign file, or another format.
    """
    source = Path(path)
    if not source.is_file():
        raise ExplanationFileError(f"explanation file not found: {source}")
    try:
        with np.load(source, allow_pickle=False) as data:
            attributions = data["attributions"].astype(np.float64)
            record = json.loads(str(data["record"][()]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ExplanationFileError(f"cannot read explanation file {source}: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ExplanationFileError(f"{source} is not a {FORMAT} file")
    try:
        names = record.get("feature_names")
        return Explanation(
            method=record["method"],
            model_key=record["model_key"],
            kind=record["kind"],
            predicted_class=int(record["predicted_class"]),
            confidence=float(record["confidence"]),
            target_class=int(record["target_class"]),
            attributions=attributions,
            summary=record["summary"],
            timings_ms=record["timings_ms"],
            extra=record["extra"],
            params=record["params"],
            probabilities=record["probabilities"],
            feature_names=tuple(names) if names is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExplanationFileError(f"explanation file {source} lacks a field: {exc}") from exc
