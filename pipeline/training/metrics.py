"""Results shared by deep and classical training: epoch records, test metrics, JSON safety."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_file

__all__ = [
    "EpochRecord",
    "TestMetrics",
    "TrainingResult",
    "evaluate_predictions",
    "json_safe",
    "present_classes",
    "record_vote",
    "save_predictions",
]


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (``epoch`` counts from 1); the caller stores one history row each."""

    epoch: int
    train_loss: float
    val_loss: float
    train_acc: float
    val_acc: float
    lr: float
    duration_s: float
    data_wait_fraction: float
    is_best: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-safe dict."""
        return json_safe(dataclasses.asdict(self))


@dataclass(frozen=True)
class TrainingResult:
    """What a training run returns; ``to_dict()`` is JSON-safe.

    ``model_path`` is ``best.pt`` for a deep model and the skops file for a classical one
    (``model_sha256`` is its digest). ``resumed_from_epoch`` is the last epoch found in
    ``last.pt`` when the run continued an interrupted one, else ``None``. ``duration_s``,
    ``train_windows_per_s`` and ``data_wait_fraction`` describe this run only.
    """

    model_key: str
    model_args: dict[str, Any]
    config: dict[str, Any]
    class_keys: list[str]
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    resumed_from_epoch: int | None
    history: list[dict[str, Any]]
    test: dict[str, Any]
    parameter_count: int
    duration_s: float
    train_windows_per_s: float
    data_wait_fraction: float
    device: str
    mixed_precision: bool
    model_path: str
    model_sha256: str | None
    last_checkpoint_path: str | None
    predictions_path: str
    precision: str = "fp32"  # the autocast dtype trained in: fp32, bf16 or fp16
    data_stored: bool = False  # read a group of records at a time (larger than the memory budget)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-safe dict."""
        return json_safe(dataclasses.asdict(self))


@dataclass(frozen=True)
class TestMetrics:
    """Window- and record-level results on the test split (all plain Python values).

    Per-class tables are sized to the classes present (``present_classes``): ``class_keys``
    names them, in index order; ``per_class_accuracy`` maps each to its window recall.
    Confusion matrices are rows = true, columns = predicted, over ``class_keys``.
    """

    window_accuracy: float
    record_accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    per_class_accuracy: dict[str, float | None]
    class_keys: list[str]
    confusion_matrix: list[list[int]]
    record_confusion_matrix: list[list[int]]
    n_windows: int
    n_records: int

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a JSON-safe dict."""
        return json_safe(dataclasses.asdict(self))


def present_classes(labels: np.ndarray, predictions: np.ndarray | None = None) -> list[int]:
    """The class indices that a per-class table covers: those in ``labels`` and in ``predictions``.

    A 3-class dataset gives 3 rows, not one per class the model could name; a class the model
    predicts but the data lacks is kept, so a wrong prediction never drops out of a table.
    """
    found = set(np.asarray(labels).tolist())
    if predictions is not None:
        found |= set(np.asarray(predictions).tolist())
    return sorted(int(c) for c in found)


def record_vote(
    probabilities: np.ndarray, labels: np.ndarray, record_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft vote: mean softmax of each record's windows.

    Returns ``(record_ids, record_labels, record_probabilities)``, sorted by record id; a
    record's label is the most common label of its windows.
    """
    ids, inverse = np.unique(record_ids, return_inverse=True)
    sums = np.zeros((len(ids), probabilities.shape[1]))
    np.add.at(sums, inverse, probabilities)
    counts = np.bincount(inverse, minlength=len(ids))[:, None]
    record_labels = np.array(
        [np.bincount(labels[inverse == i]).argmax() for i in range(len(ids))], dtype=np.int64
    )
    return ids, record_labels, sums / counts


def evaluate_predictions(
    probabilities: np.ndarray,
    labels: np.ndarray,
    record_ids: np.ndarray,
    class_keys: tuple[str, ...] | list[str],
) -> TestMetrics:
    """Score window probabilities ``[n, C]`` against ``labels`` [n], grouped by ``record_ids``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    predictions = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=sorted(set(labels.tolist())), average="macro", zero_division=0
    )
    _, record_labels, record_probs = record_vote(probabilities, labels, record_ids)
    record_predictions = record_probs.argmax(axis=1)
    # One class set for both matrices, so window and record tables line up row for row.
    classes = present_classes(labels, np.concatenate([predictions, record_predictions]))
    matrix = confusion_matrix(labels, predictions, labels=classes)
    support = matrix.sum(axis=1)
    per_class = {
        class_keys[c]: (float(matrix[i, i] / support[i]) if support[i] else None)
        for i, c in enumerate(classes)
    }
    return TestMetrics(
        window_accuracy=float(accuracy_score(labels, predictions)),
        record_accuracy=float(accuracy_score(record_labels, record_predictions)),
        precision_macro=float(precision),
        recall_macro=float(recall),
        f1_macro=float(f1),
        per_class_accuracy=per_class,
        class_keys=[class_keys[c] for c in classes],
        confusion_matrix=matrix.tolist(),
        record_confusion_matrix=confusion_matrix(
            record_labels, record_predictions, labels=classes
        ).tolist(),
        n_windows=len(labels),
        n_records=len(record_labels),
    )


def save_predictions(
    path: str | os.PathLike[str],
    probabilities: np.ndarray,
    labels: np.ndarray,
    record_ids: np.ndarray,
) -> Path:
    """Write probabilities, predictions, labels and record ids to an ``.npz``, atomically."""
    target = Path(path)
    with atomic_file(target) as handle:
        np.savez_compressed(
            handle,
            probabilities=probabilities.astype(np.float32),
            predictions=probabilities.argmax(axis=1).astype(np.int64),
            labels=np.asarray(labels, dtype=np.int64),
            record_ids=np.asarray(record_ids, dtype=np.int64),
        )
    return target


def json_safe(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to JSON values (NaN and inf become None)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value
