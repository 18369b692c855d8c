"""Features of a whole dataset file, whole or in record-range shards, and saved selections.

A dataset's feature set has one row per 1 s window of every record of every split, in a
fixed order: splits as ``SPLITS`` lists them, records in file order, a record's windows in
time order. A shard is a range of records of one split; extracting every shard of a plan
and merging the parts in plan order gives exactly the rows of one whole extraction, since
each window's features depend on that window alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.artifacts import atomic_path, file_sha256
from pipeline.datasets.hdf5 import SPLITS, cut_windows, read_geometry, read_split
from pipeline.domain import FS
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.features.extract import (
    DOMAINS,
    FeatureMatrix,
    extract_window_features,
    feature_names,
    window_feature_names,
)
from pipeline.features.store import FeatureSet, load_feature_set, save_feature_set
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled

if TYPE_CHECKING:
    from pipeline.training.classical import FeaturesFn

__all__ = [
    "SELECTION_FORMAT",
    "Shard",
    "extract_dataset_features",
    "extract_shard",
    "load_parts",
    "load_selection",
    "merge_parts",
    "plan_shards",
    "save_parts",
    "save_selection",
    "selection_features_fn",
]

SELECTION_FORMAT = "pfd-feature-selection/1"


@dataclass(frozen=True)
class Shard:
    """Records ``[start, stop)`` of one split."""

    split: str
    start: int
    stop: int


def plan_shards(split_counts: Mapping[str, int], records_per_shard: int) -> list[Shard]:
    """Cut every split into ranges of at most ``records_per_shard`` records, in row order.

    Raises:
        InvalidInput: ``records_per_shard`` < 1, or a split absent or negative.
    """
    if records_per_shard < 1:
        raise InvalidInput(f"records_per_shard must be at least 1, got {records_per_shard}")
    shards = []
    for split in SPLITS:
        count = int(split_counts.get(split, -1))
        if count < 0:
            raise InvalidInput(f"split counts lack {split!r}: {dict(split_counts)}")
        shards += [Shard(split, start, min(start + records_per_shard, count))
                   for start in range(0, count, records_per_shard)]
    return shards


def extract_shard(
    path: str | os.PathLike[str],
    shard: Shard,
    domains: Sequence[str] = DOMAINS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> FeatureSet:
    """Features of every window of the shard's records, with labels, split and record ids.

    Record ids are positions in the split, as training numbers them.

    Raises:
        DatasetFileError: the file is missing or not in the dataset layout.
        InvalidInput: unknown domain, a range outside the split.
    """
    geometry = read_geometry(path)
    names = window_feature_names(domains, geometry.channels)
    check_stop(should_stop)
    arrays = read_split(path, shard.split, slice(shard.start, shard.stop))
    if arrays.labels.size != shard.stop - shard.start:
        raise InvalidInput(f"{path}: split {shard.split!r} has no records {shard.start}..{shard.stop - 1}")
    if arrays.labels.size == 0:
        return _empty(names)
    windows, labels, positions = cut_windows(arrays.signals, arrays.labels, geometry)
    matrix = extract_window_features(windows, geometry.sampling_rate, domains, on_progress=on_progress,
                                     should_stop=should_stop, channels=geometry.channels,
                                     shaft_hz=arrays.shaft_hz[positions])
    record_ids = positions + shard.start
    return FeatureSet(
        values=matrix.values, names=matrix.names, labels=labels,
        splits=np.full(record_ids.size, shard.split), record_ids=record_ids,
    )


def _empty(names: tuple[str, ...]) -> FeatureSet:
    return FeatureSet(values=np.empty((0, len(names))), names=names, labels=np.empty(0, dtype=np.int64),
                      splits=np.empty(0, dtype=np.str_), record_ids=np.empty(0, dtype=np.int64))


def merge_parts(parts: Sequence[FeatureSet], provenance: dict[str, Any] | None = None) -> FeatureSet:
    """Concatenate shard parts in the order given (the plan's order).

    Raises:
        InvalidInput: no part, or parts with different columns.
    """
    if not parts:
        raise InvalidInput("nothing to merge: no feature parts")
    names = parts[0].names
    if any(part.names != names for part in parts):
        raise InvalidInput("feature parts disagree on their columns")
    return FeatureSet(
        values=np.concatenate([p.values for p in parts]), names=names,
        labels=np.concatenate([p.labels for p in parts]).astype(np.int64),
        splits=np.concatenate([np.asarray(p.splits, dtype=np.str_) for p in parts]),
        record_ids=np.concatenate([p.record_ids for p in parts]).astype(np.int64),
        provenance=dict(provenance or {}),
    )


def extract_dataset_features(
    path: str | os.PathLike[str],
    split_counts: Mapping[str, int],
    domains: Sequence[str] = DOMAINS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> FeatureSet:
    """Features of every window of every split of a dataset file, in one process.

    The same as extracting each shard of any ``plan_shards`` plan and merging the parts.
    """
    shards = plan_shards(split_counts, max(1, max(int(n) for n in split_counts.values())))
    total = sum(s.stop - s.start for s in shards) or 1
    parts, done = [], 0
    for shard in shards:
        size = shard.stop - shard.start
        report = scaled(on_progress, done / total, (done + size) / total)
        parts.append(extract_shard(path, shard, domains, report, should_stop))
        done += size
    return merge_parts(parts) if parts else _empty(feature_names(domains))


def save_parts(path: str | os.PathLike[str], features: FeatureSet, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write a feature set (a shard's part or a whole set) with ``save_feature_set``.

    Returns what a record of the file holds: ``path``, ``checksum``, ``n_windows``,
    ``n_features`` and windows per split (``split_counts``).
    """
    target = save_feature_set(path, FeatureMatrix(features.values, features.names), features.labels,
                              features.splits, features.record_ids, provenance)
    return {"path": str(target), "checksum": file_sha256(target), "n_windows": int(features.values.shape[0]),
            "n_features": len(features.names),
            "split_counts": {split: int((features.splits == split).sum()) for split in SPLITS}}


def load_parts(paths: Sequence[str | os.PathLike[str]]) -> FeatureSet:
    """Read shard parts and merge them in the order given.

    Raises:
        DatasetFileError: parts are missing (their positions are named) or unreadable.
    """
    missing = [i for i, path in enumerate(paths) if not Path(path).is_file()]
    if missing:
        raise DatasetFileError(f"shard part(s) {missing} of {len(paths)} are missing: those shards failed")
    return merge_parts([load_feature_set(path) for path in paths])


def save_selection(
    path: str | os.PathLike[str], selection: Any, all_names: Sequence[str], provenance: dict[str, Any]
) -> Path:
    """Write a ``Selection`` as JSON (atomically): what classical training needs to reuse it."""
    document = {
        "format": SELECTION_FORMAT, "method": selection.method, "names": list(selection.names),
        "indices": [int(i) for i in selection.indices], "scores": [float(s) for s in selection.scores],
        "all_names": list(all_names), "provenance": provenance,
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
    return target


def load_selection(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a selection written by ``save_selection``.

    Raises:
        DatasetFileError: missing or unreadable file, another format, unknown feature names.
    """
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetFileError(f"cannot read feature selection {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != SELECTION_FORMAT:
        raise DatasetFileError(f"{path} is not a feature selection ({SELECTION_FORMAT})")
    known = set(feature_names(DOMAINS))
    # A multi-channel feature set names its columns "<channel>:<feature>".
    unknown = sorted(name for name in document.get("names") or [] if name.rpartition(":")[2] not in known)
    if unknown or not document.get("names"):
        raise DatasetFileError(f"{path} names unknown features {unknown} or none at all")
    return document


def _selection_channels(selection: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The channels a selection's feature set was taken over, in column order (None: one)."""
    columns = selection.get("all_names") or selection["names"]
    channels = dict.fromkeys(name.partition(":")[0] for name in columns if ":" in name)
    return tuple(channels) or None


def selection_features_fn(selection: Mapping[str, Any], fs: float = FS) -> FeaturesFn:
    """A ``features_fn`` for ``train_classical`` that computes only the selected features
    (of windows sampled at ``fs``; ``[n, C, L]`` windows for a selection made over several
    channels, whose names are ``"<channel>:<feature>"``).

    Only the domains holding a selected feature are computed; columns come in the
    selection's order (best first).
    """
    wanted = list(selection["names"])
    channels = _selection_channels(selection)
    domains = [d for d in DOMAINS if set(feature_names([d])) & {name.rpartition(":")[2] for name in wanted}]
    computed = window_feature_names(domains, channels or ("",))
    columns = [computed.index(name) for name in wanted]

    def features(windows: np.ndarray, on_progress: ProgressFn, should_stop: StopFn,
                 shaft_hz: np.ndarray | None = None) -> np.ndarray:
        if (np.ndim(windows) == 3) != (channels is not None) or channels and len(channels) != windows.shape[1]:
            raise InvalidInput(f"this selection was made over {len(channels or ('',))} channel(s), the windows "
                               f"have shape {np.shape(windows)}")
        matrix = extract_window_features(windows, fs, domains, on_progress=on_progress, should_stop=should_stop,
                                         channels=channels, shaft_hz=shaft_hz)
        return matrix.values[:, columns]

    return features
