"""The dataset file's layout (DOMAIN.md "Dataset file") and the pieces both sides share.

Layout::

    /                 attrs: num_classes, class_keys (JSON), sampling_rate, record_length,
                      split_ratios, seed, generator_config (JSON), generator_config_hash,
                      generator_version, source ("generator" | "mat_import" | "table_import"),
                      and the rest of the geometry (``geometry``): display_names (JSON),
                      window_length, window_hop, channels (JSON)
    /{train,val,test}/signals     float32 [n, L] (one channel) or [n, C, L], one record per
                                  chunk, gzip level 4 (generated) or raw (imported);
                                  L = record_length (102,400 generated)
                     /labels      int64 [n]      index in class_keys
                     /severities  float32 [n]    mean severity (NaN when unknown)
                     /metadata    utf-8 str [n]  one JSON object per record

Compression: gzip 4 rather than lzf. Measured on generated records (quantised signals):
gzip 4 stores 42 % of the raw size at ~8 ms per record, lzf 65 % at ~3 ms; both read back in
1-2 ms. gzip is readable by every HDF5 tool (MATLAB, h5py, HDF5 C), lzf only by h5py, and
generation compresses in its worker processes (``encode_signal``), so the cost is spread
over every core instead of serialising the writer.

Imported recordings are stored raw: measured on rig-format float recordings (12 kHz, two
accelerometers, bench/bench_import.py's data), gzip 4 keeps 93 % of the size at ~9-15 MB/s
on one core here, so it would cost an import most of its time for 7 % of disk.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.geometry import GENERATOR_GEOMETRY, DatasetGeometry
from pipeline.errors import InvalidInput
from pipeline.signals.config import check_split_ratios

__all__ = [
    "COMPRESSION_LEVEL",
    "DATASETS",
    "REQUIRED_ATTRS",
    "SOURCES",
    "SPLITS",
    "STRING_DTYPE",
    "EncodedSignal",
    "SplitArrays",
    "check_dataset_id",
    "dataset_attrs",
    "encode_signal",
    "shaft_speeds",
    "split_indices",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
COMPRESSION_LEVEL = 4
SOURCES = ("generator", "mat_import", "table_import")
REQUIRED_ATTRS = (
    "num_classes", "class_keys", "sampling_rate", "record_length", "split_ratios", "seed",
    "generator_config", "generator_config_hash", "generator_version", "source",
)
DATASETS = {  # name -> (expected dtype, shape after the record axis; signals: the geometry's)
    "signals": (np.dtype(np.float32), ()),
    "labels": (np.dtype(np.int64), ()),
    "severities": (np.dtype(np.float32), ()),
}
STRING_DTYPE = h5py.string_dtype("utf-8")


@dataclass
class SplitArrays:
    """One split read back: signals float32 [n, L], labels int64 [n], severities float32 [n]."""

    signals: np.ndarray
    labels: np.ndarray
    severities: np.ndarray
    metadata: list[dict[str, Any]]

    @property
    def shaft_hz(self) -> np.ndarray:
        """Each record's shaft speed in Hz, from its metadata's ``rpm`` (NaN where none)."""
        return shaft_speeds(self.metadata)


def shaft_speeds(metadata: list[dict[str, Any]]) -> np.ndarray:
    """Shaft speed in Hz (``rpm`` / 60) of each record's metadata; NaN where it holds no
    positive rpm (generated records, recordings without a speed variable or column)."""
    speeds = np.full(len(metadata), np.nan)
    for index, record in enumerate(metadata):
        rpm = record.get("rpm") if isinstance(record, dict) else None
        if isinstance(rpm, (int, float)) and not isinstance(rpm, bool) and np.isfinite(rpm) and rpm > 0:
            speeds[index] = rpm / 60.0
    return speeds


@dataclass(frozen=True)
class EncodedSignal:
    """A record's signal as the bytes of one compressed HDF5 chunk.

    ``filter_mask`` 1 marks a chunk stored raw because deflate would have grown it.
    """

    data: bytes
    filter_mask: int


def encode_signal(signal: np.ndarray) -> EncodedSignal:
    """Compress one record exactly as the HDF5 deflate filter would (zlib, level 4).

    Lets worker processes do the compression so the writer only copies bytes.
    """
    raw = np.ascontiguousarray(signal, dtype="<f4").tobytes()
    packed = zlib.compress(raw, COMPRESSION_LEVEL)
    if len(packed) >= len(raw):
        return EncodedSignal(raw, 1)
    return EncodedSignal(packed, 0)


def dataset_attrs(
    *, source: str, split_ratios: Sequence[float], seed: int,
    generator_config: Mapping[str, Any], generator_config_hash: str, generator_version: str,
    geometry: DatasetGeometry = GENERATOR_GEOMETRY,
) -> dict[str, Any]:
    """Build the root attributes of a dataset file (the generator's geometry unless given)."""
    if source not in SOURCES:
        raise InvalidInput(f"unknown dataset source {source!r}; valid: {', '.join(SOURCES)}")
    return {
        **geometry.to_attrs(),
        "split_ratios": np.asarray(check_split_ratios(tuple(split_ratios)), dtype=np.float64),
        "seed": int(seed),
        "generator_config": json.dumps(dict(generator_config), sort_keys=True),
        "generator_config_hash": generator_config_hash,
        "generator_version": generator_version,
        "source": source,
    }


def split_indices(
    labels: Sequence[int] | np.ndarray, ratios: Sequence[float], seed: int,
    groups: Sequence[str] | None = None, strict: bool = True,
) -> dict[str, np.ndarray]:
    """Stratified train/val/test split of record positions, each split sorted ascending.

    Per class, counts follow the largest-remainder rule on ``ratios``; a class with at
    least 3 records puts one or more in every split whose ratio is > 0 (taken from the
    largest split). Deterministic for a given ``seed``.

    With ``groups`` (each record's recording), whole recordings are split instead: every
    record of a recording lands in the recording's split, so near-duplicate windows of one
    recording never sit on both sides of an evaluation. A class with fewer recordings than
    splits to fill is refused when ``strict``; otherwise its recordings go where the
    largest-remainder rule puts them (the largest splits first), leaving some splits without it.

    Raises:
        InvalidInput: a recording holds records of two classes, or (with ``groups`` and
            ``strict``) a class has fewer recordings than there are splits to fill.
    """
    ratios = check_split_ratios(tuple(ratios))
    labels = np.asarray(labels, dtype=np.int64)
    if groups is None:
        return _split_units(labels, ratios, seed)
    names, unit_of = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    unit_labels = np.full(len(names), -1, dtype=np.int64)
    for unit, label in zip(unit_of.tolist(), labels.tolist()):
        if unit_labels[unit] not in (-1, label):
            raise InvalidInput(f"recording {names[unit]!r} holds records of two classes; a "
                               "recording must have one label")
        unit_labels[unit] = label
    needed = sum(1 for r in ratios if r > 0)
    counts = np.bincount(unit_labels)
    short = [int(c) for c in np.flatnonzero((counts > 0) & (counts < needed))]
    if short and strict:
        raise InvalidInput(
            f"class label(s) {short} have fewer than {needed} recordings "
            f"({', '.join(str(int(counts[c])) for c in short)}): splits are made by recording, "
            "so each class needs one per split; add recordings or set a split ratio to 0")
    units = _split_units(unit_labels, ratios, seed)
    return {split: np.flatnonzero(np.isin(unit_of, chosen)) for split, chosen in units.items()}


def _split_units(labels: np.ndarray, ratios: tuple[float, float, float],
                 seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        counts = _split_counts(members.size, ratios)
        edges = np.cumsum([0, *counts])
        for split, lo, hi in zip(SPLITS, edges[:-1], edges[1:]):
            parts[split].append(members[lo:hi])
    return {
        split: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
        for split, chunks in parts.items()
    }


def _split_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    quotas = [n * r for r in ratios]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(3), key=lambda k: quotas[k] - counts[k], reverse=True)
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    if n >= 3:
        for k in range(3):
            if ratios[k] > 0 and counts[k] == 0:
                counts[max(range(3), key=counts.__getitem__)] -= 1
                counts[k] += 1
    return counts



def check_dataset_id(dataset_id: str) -> str:
    """Refuse ids that are not a plain file name (they name files under the output dir)."""
    if (not isinstance(dataset_id, str) or not dataset_id or dataset_id.startswith(".")
            or len(dataset_id) > 128
            or not all(c.isalnum() or c in "-_." for c in dataset_id)):
        raise InvalidInput(
            f"dataset id {dataset_id!r} must be 1-128 characters of letters, digits, '-', '_'"
            " or '.', not starting with '.'"
        )
    return dataset_id
