"""Where a model goes wrong: confusion, confused pairs, confident mistakes, and conditions."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.domain import SEVERITY_BANDS
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.evaluation.roc import check_predictions
from pipeline.training.metrics import present_classes

__all__ = ["CONDITIONS", "error_analysis", "read_record_metadata", "severity_band"]

# Operating conditions in the generator's record metadata, by the name results use.
CONDITIONS: dict[str, str] = {"speed": "speed_hz", "load": "load_percent", "temperature": "temperature_c"}
UNKNOWN = "unknown"


def severity_band(metadata: Mapping[str, Any]) -> str:
    """The record's severity band: its recorded band, ``healthy`` for a healthy record, else
    the band its severity value falls in (``unknown`` when there is none)."""
    band = metadata.get("severity_band")
    if isinstance(band, str) and band:
        return band
    if metadata.get("fault") == "sain":
        return "healthy"  # the generator gives healthy records no band
    value = metadata.get("severity")
    if isinstance(value, (int, float)) and math.isfinite(value):
        for name, (low, high) in SEVERITY_BANDS.items():
            if low <= value < high or (name == "severe" and value == high):
                return name
    return UNKNOWN


def _accuracy_groups(groups: np.ndarray, correct: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per group name: windows, errors and accuracy, groups in sorted order."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(groups.tolist())):
        mask = groups == name
        n = int(mask.sum())
        out[str(name)] = {"windows": n, "errors": int(n - correct[mask].sum()), "accuracy": float(correct[mask].mean())}
    return out


def _condition_bins(values: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict[str, Any]]:
    """Equal-width bins over the observed range of one condition; unknown values apart."""
    known = np.isfinite(values)
    bins: list[dict[str, Any]] = []
    if known.any():
        low, high = float(values[known].min()), float(values[known].max())
        edges = np.linspace(low, high, n_bins + 1) if high > low else np.array([low, high])
        # digitize on the inner edges: the last bin includes its upper edge.
        index = np.digitize(values[known], edges[1:-1], right=False)
        for b in range(len(edges) - 1):
            mask = index == b
            if mask.any():
                ok = correct[known][mask]
                bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "windows": int(mask.sum()),
                             "errors": int(mask.sum() - ok.sum()), "accuracy": float(ok.mean())})
    if (~known).any():
        ok = correct[~known]
        bins.append({"low": None, "high": None, "windows": int(ok.size), "errors": int(ok.size - ok.sum()),
                     "accuracy": float(ok.mean())})
    return bins


def _metadata_per_window(record_metadata: Sequence[Mapping[str, Any]], record_ids: np.ndarray) -> list[Mapping[str, Any]]:
    if record_ids.size and (record_ids.min() < 0 or record_ids.max() >= len(record_metadata)):
        raise InvalidInput(
            f"record ids reach {int(record_ids.max())} but the split has {len(record_metadata)} records: "
            "the predictions do not belong to this dataset"
        )
    return [record_metadata[int(r)] for r in record_ids]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def error_analysis(
    probabilities: np.ndarray,
    labels: np.ndarray,
    record_ids: np.ndarray,
    class_keys: Sequence[str],
    record_metadata: Sequence[Mapping[str, Any]] | None = None,
    *,
    top_pairs: int = 10,
    max_windows: int = 50,
    condition_bins: int = 4,
) -> dict[str, Any]:
    """Confusion, most confused pairs, misclassified windows, errors by severity and condition.

    Args:
        probabilities: ``[n, C]`` window probabilities (the saved test predictions).
        labels: ``[n]`` true labels; ``record_ids``: ``[n]`` position of each window's
            record in its split, which indexes ``record_metadata``.
        class_keys: the ``C`` class keys (the model's outputs); the confusion tables cover
            only the classes present in ``labels`` or predicted (``present_classes``).
        record_metadata: one dict per record of the split (severity, ``speed_hz``,
            ``load_percent``, ``temperature_c``); ``None`` leaves out the breakdowns.
        top_pairs: confused (true, predicted) pairs to list, most frequent first.
        max_windows: misclassified windows to list, most confident first.
        condition_bins: equal-width bins per operating condition.

    Returns:
        A JSON-safe dict: ``confusion`` (``counts``, row-``normalised``), ``confused_pairs``,
        ``misclassified`` (``total`` and ``windows``), ``by_severity``, ``by_condition``,
        ``accuracy``, ``n_windows``.

    Raises:
        InvalidInput: bad shapes or labels, record ids beyond the metadata, a limit < 1.
    """
    if min(top_pairs, max_windows, condition_bins) < 1:
        raise InvalidInput("top_pairs, max_windows and condition_bins must be at least 1")
    keys = list(class_keys)
    probs, y = check_predictions(probabilities, labels, len(keys))
    records = np.asarray(record_ids, dtype=np.int64)
    if records.shape != y.shape:
        raise InvalidInput(f"record_ids must have shape {y.shape}, got {records.shape}")
    predicted = probs.argmax(axis=1)
    correct = predicted == y
    classes = present_classes(y, predicted)
    position = np.full(len(keys), -1, dtype=np.int64)
    position[classes] = np.arange(len(classes))
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (position[y], position[predicted]), 1)
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)

    off = counts.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top_pairs]
    pairs = [
        {"true": keys[classes[t]], "predicted": keys[classes[p]], "count": int(off[t, p]),
         "fraction_of_true": float(normalised[t, p])}
        for t, p in zip(*np.unravel_index(order, off.shape)) if off[t, p] > 0
    ]
    wrong = np.flatnonzero(~correct)
    confidence = probs[np.arange(len(y)), predicted]
    listed = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_windows]
    windows = [
        {"index": int(i), "record_id": int(records[i]), "true": keys[y[i]], "predicted": keys[predicted[i]],
         "confidence": float(confidence[i]), "true_probability": float(probs[i, y[i]])}
        for i in listed
    ]
    result: dict[str, Any] = {
        "n_windows": len(y),
        "accuracy": float(correct.mean()),
        "class_keys": [keys[c] for c in classes],
        "confusion": {"counts": counts.tolist(), "normalised": normalised.tolist()},
        "confused_pairs": pairs,
        "misclassified": {"total": int(wrong.size), "windows": windows},
        "by_severity": {},
        "by_condition": {},
    }
    if record_metadata is not None:
        per_window = _metadata_per_window(record_metadata, records)
        bands = np.array([severity_band(m) for m in per_window], dtype=object)
        result["by_severity"] = _accuracy_groups(bands, correct)
        for name, field in CONDITIONS.items():
            values = np.array([_number(m.get(field)) for m in per_window], dtype=np.float64)
            result["by_condition"][name] = _condition_bins(values, correct, condition_bins)
    return result


def read_record_metadata(path: str | os.PathLike[str], split: str = "test") -> list[dict[str, Any]]:
    """The metadata JSON of every record of ``split``, without reading the signals.

    Raises:
        DatasetFileError: the file, the split or its metadata is missing or unreadable.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle[f"{split}/metadata"][...]
    except (OSError, KeyError) as exc:
        raise DatasetFileError(f"cannot read the {split} metadata of {path}: {exc}") from None
    try:
        return [json.loads(v.decode("utf-8") if isinstance(v, bytes) else str(v)) for v in raw]
    except ValueError as exc:
        raise DatasetFileError(f"{path}: {split} metadata is not JSON: {exc}") from None
