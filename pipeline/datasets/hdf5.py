"""The dataset file (DOMAIN.md "Dataset file"): readers and validation, plus the layout and
writer re-exported, so ``pipeline.datasets.hdf5`` is the one module to import.

See ``pipeline.datasets.layout`` for the layout and the choice of compression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.datasets.layout import (
    COMPRESSION_LEVEL,
    DATASETS,
    REQUIRED_ATTRS,
    SOURCES,
    SPLITS,
    EncodedSignal,
    SplitArrays,
    check_dataset_id,
    dataset_attrs,
    encode_signal,
    shaft_speeds,
    split_indices,
)
from pipeline.datasets.writer import DatasetWriter
from pipeline.errors import DatasetFileError, InvalidInput

__all__ = [
    "COMPRESSION_LEVEL",
    "SOURCES",
    "SPLITS",
    "DatasetWriter",
    "EncodedSignal",
    "SplitArrays",
    "check_dataset_id",
    "cut_windows",
    "dataset_attrs",
    "dataset_info",
    "dataset_normalization_rule",
    "encode_signal",
    "read_geometry",
    "read_labels",
    "read_shaft_hz",
    "read_split",
    "read_windows",
    "split_indices",
    "validate_dataset_file",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_JSON_ATTRS = ("class_keys", "generator_config", "display_names", "channels")


def _open(path: str | os.PathLike[str]) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"dataset file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        if _has_hdf5_signature(path):
            raise DatasetFileError(
                f"dataset file is truncated or corrupt: {path} ({error})"
            ) from None
        raise DatasetFileError(f"not an HDF5 file: {path}") from None


def _has_hdf5_signature(path: Path) -> bool:
    # The superblock sits at 0, 512, 1024, ... (a user block may precede it).
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    return any(head[k:k + 8] == _HDF5_SIGNATURE for k in (0, 512, 1024, 2048, 4096, 8192))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def read_split(
    path: str | os.PathLike[str], split: str, records: slice | None = None
) -> SplitArrays:
    """Read one split (or a slice of its records) into memory."""
    _check_split(split)
    selection = records if records is not None else slice(None)
    with _open(path) as handle:
        group = _group(handle, split)
        try:
            metadata = [json.loads(_text(v)) for v in group["metadata"][selection]]
            return SplitArrays(
                signals=np.asarray(group["signals"][selection], dtype=np.float32),
                labels=np.asarray(group["labels"][selection], dtype=np.int64),
                severities=np.asarray(group["severities"][selection], dtype=np.float32),
                metadata=metadata,
            )
        except KeyError as error:
            raise DatasetFileError(f"{path}: split {split!r} lacks a dataset ({error})") from None
        except OSError as error:
            raise DatasetFileError(f"{path}: cannot read split {split!r}: {error}") from None


def read_labels(path: str | os.PathLike[str], split: str) -> np.ndarray:
    """The labels ``[n]`` of one split's records, without reading a signal."""
    _check_split(split)
    with _open(path) as handle:
        group = _group(handle, split)
        try:
            return np.asarray(group["labels"][...], dtype=np.int64)
        except KeyError as error:
            raise DatasetFileError(f"{path}: split {split!r} lacks a dataset ({error})") from None


def read_shaft_hz(path: str | os.PathLike[str], split: str, records: slice | None = None) -> np.ndarray:
    """Each record's shaft speed in Hz (NaN where not recorded), reading only the metadata."""
    _check_split(split)
    with _open(path) as handle:
        group = _group(handle, split)
        try:
            values = group["metadata"][records if records is not None else slice(None)]
        except KeyError as error:
            raise DatasetFileError(f"{path}: split {split!r} lacks a dataset ({error})") from None
    return shaft_speeds([json.loads(_text(v)) for v in values])


def read_windows(
    path: str | os.PathLike[str], split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a split as windows: (float32 windows, labels [m], record ids [m]).

    Windows are ``[m, W]`` for one channel and ``[m, C, W]`` for several, cut from each
    record at the dataset's window length and hop (the generator's: five 1 s windows per
    record). Record ids are positions in the split, for the soft vote of a record's windows.
    """
    geometry = read_geometry(path)
    arrays = read_split(path, split)
    return cut_windows(arrays.signals, arrays.labels, geometry)


def cut_windows(signals: np.ndarray, labels: np.ndarray,
                geometry: DatasetGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut records ``[n, L]`` or ``[n, C, L]`` into windows, with their labels and record ids."""
    per_record = geometry.windows_per_record
    width, hop = geometry.window_length, geometry.window_hop
    if hop == width and per_record * width == signals.shape[-1]:
        # Windows that tile the record exactly are a reshape (a view), not a copy.
        if signals.ndim == 2:
            windows = signals.reshape(-1, width)
        else:
            windows = signals.reshape(signals.shape[0], signals.shape[1], per_record, width)
            windows = windows.transpose(0, 2, 1, 3).reshape(-1, signals.shape[1], width)
    else:
        view = np.lib.stride_tricks.sliding_window_view(signals, width, axis=-1)[..., ::hop, :]
        view = view[..., :per_record, :]
        if signals.ndim == 3:  # [n, C, k, W] -> [n, k, C, W]
            view = view.transpose(0, 2, 1, 3)
        windows = np.ascontiguousarray(view).reshape(-1, *view.shape[2:])
    labels = np.repeat(np.asarray(labels, dtype=np.int64), per_record)
    record_ids = np.repeat(np.arange(len(signals), dtype=np.int64), per_record)
    return windows, labels, record_ids


def read_geometry(path: str | os.PathLike[str]) -> DatasetGeometry:
    """The dataset's classes, rate, channels and window lengths (root attributes only)."""
    with _open(path) as handle:
        try:
            return DatasetGeometry.from_attrs(_decoded_attrs(handle))
        except InvalidInput as error:
            raise DatasetFileError(f"{path}: {error}") from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _group(handle: h5py.File, split: str) -> h5py.Group:
    group = handle.get(split)
    if not isinstance(group, h5py.Group):
        raise DatasetFileError(f"{handle.filename}: missing group {split!r}")
    return group


def _decoded_attrs(handle: h5py.File) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, value in handle.attrs.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        if name in _JSON_ATTRS and isinstance(value, str):
            value = json.loads(value)
        attrs[name] = value
    return attrs


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the root attributes and record counts per split and per class (JSON-safe)."""
    with _open(path) as handle:
        attrs = _decoded_attrs(handle)
        keys = DatasetGeometry.from_attrs(attrs).class_keys
        split_counts: dict[str, int] = {}
        split_class_counts: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            labels = np.asarray(_group(handle, split)["labels"][...], dtype=np.int64)
            split_counts[split] = int(labels.size)
            counts = np.bincount(labels, minlength=len(keys))
            split_class_counts[split] = {
                key: int(counts[k]) for k, key in enumerate(keys) if counts[k]
            }
    class_counts = {
        key: sum(split_class_counts[split].get(key, 0) for split in SPLITS)
        for key in keys
    }
    return {
        "path": str(path),
        "attrs": attrs,
        "n_records": sum(split_counts.values()),
        "split_counts": split_counts,
        "class_counts": {key: n for key, n in class_counts.items() if n},
        "split_class_counts": split_class_counts,
    }


def dataset_normalization_rule(path: str | os.PathLike[str]) -> str:
    """The z-score rule the dataset's signals were written under: ``none``, ``file`` or ``record``.

    Reads the root attributes only (see ``pipeline.signals.normalize``).
    """
    from pipeline.signals.normalize import dataset_normalization

    with _open(path) as handle:
        return dataset_normalization(_decoded_attrs(handle))


def validate_dataset_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a dataset file against the layout; return ``dataset_info`` when it passes.

    Raises:
        DatasetFileError: missing file, not HDF5, truncated, a missing attribute, group or
            dataset, a wrong dtype or shape, or a label outside ``[0, num_classes)``.
    """
    with _open(path) as handle:
        missing = [name for name in REQUIRED_ATTRS if name not in handle.attrs]
        if missing:
            raise DatasetFileError(f"{path}: missing root attributes: {', '.join(missing)}")
        try:
            geometry = DatasetGeometry.from_attrs(_decoded_attrs(handle))
        except InvalidInput as error:
            raise DatasetFileError(f"{path}: {error}") from None
        if int(handle.attrs["num_classes"]) != geometry.num_classes:
            raise DatasetFileError(f"{path}: num_classes {int(handle.attrs['num_classes'])} "
                                   f"disagrees with {geometry.num_classes} class keys")
        for split in SPLITS:
            _validate_split(path, _group(handle, split), split, geometry.num_classes,
                            geometry.signal_shape())
    return dataset_info(path)


def _validate_split(path: Any, group: h5py.Group, split: str, num_classes: int,
                    signal_shape: tuple[int, ...]) -> None:
    sizes = set()
    for name in (*DATASETS, "metadata"):
        dataset = group.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise DatasetFileError(f"{path}: missing dataset {split}/{name}")
        if name == "metadata":
            if h5py.check_string_dtype(dataset.dtype) is None:
                raise DatasetFileError(
                    f"{path}: {split}/metadata has dtype {dataset.dtype}, expected strings"
                )
            suffix: tuple[int, ...] = ()
        else:
            dtype, suffix = DATASETS[name]
            suffix = signal_shape if name == "signals" else suffix
            if dataset.dtype != dtype:
                raise DatasetFileError(
                    f"{path}: {split}/{name} has dtype {dataset.dtype}, expected {dtype}"
                )
        if dataset.ndim != 1 + len(suffix) or dataset.shape[1:] != suffix:
            raise DatasetFileError(
                f"{path}: {split}/{name} has shape {dataset.shape}, expected (n, *{suffix})"
            )
        sizes.add(dataset.shape[0])
    if len(sizes) != 1:
        raise DatasetFileError(f"{path}: {split} datasets disagree on the record count {sizes}")
    try:
        labels = np.asarray(group["labels"][...])
        if group["signals"].shape[0]:
            # Reading the last chunk proves the data is really there (not cut short).
            group["signals"][-1]
    except OSError as error:
        raise DatasetFileError(f"{path}: {split} cannot be read: {error}") from None
    out = labels[(labels < 0) | (labels >= num_classes)]
    if out.size:
        raise DatasetFileError(
            f"{path}: {split}/labels holds {int(out[0])}, outside [0, {num_classes})"
        )
