"""Write a dataset file so that it appears only once complete."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h5py
import numpy as np

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.datasets.layout import (
    COMPRESSION_LEVEL,
    REQUIRED_ATTRS,
    SPLITS,
    STRING_DTYPE,
    EncodedSignal,
)
from pipeline.errors import DatasetFileError, InvalidInput

__all__ = ["DatasetWriter"]


class DatasetWriter:
    """Write a dataset file; it appears at ``path`` only once complete.

    Data goes to ``path + ".partial"``; a clean exit with every position written renames
    it atomically, any exception (or a missing record) deletes it, so a crashed job never
    leaves a file that looks complete. Datasets are sized up front from ``split_sizes``.
    ``compress=False`` stores signals raw: recorded float noise hardly compresses (see
    ``pipeline.datasets.layout``), and deflate would cost the import most of its time.
    """

    def __init__(
        self, path: str | os.PathLike[str], attrs: Mapping[str, Any],
        split_sizes: Mapping[str, int], overwrite: bool = False, compress: bool = True,
    ) -> None:
        self.path = Path(path)
        self.partial = Path(f"{self.path}.partial")
        missing = [name for name in REQUIRED_ATTRS if name not in attrs]
        if missing:
            raise InvalidInput(f"dataset attributes missing: {', '.join(missing)}")
        if set(split_sizes) != set(SPLITS) or any(int(n) < 0 for n in split_sizes.values()):
            raise InvalidInput(f"split_sizes needs a count >= 0 for each of {SPLITS}")
        if self.path.exists() and not overwrite:
            raise DatasetFileError(f"dataset file already exists: {self.path}")
        self.attrs = dict(attrs)
        self.compress = compress
        self.geometry = DatasetGeometry.from_attrs(self.attrs)
        self._shape = self.geometry.signal_shape()
        self.split_sizes = {split: int(split_sizes[split]) for split in SPLITS}
        self._written = {split: np.zeros(n, dtype=bool) for split, n in self.split_sizes.items()}
        # Small per-record fields are buffered and written once on close: thousands of
        # one-element HDF5 writes would cost the writer more than the signals themselves.
        self._labels = {split: np.zeros(n, np.int64) for split, n in self.split_sizes.items()}
        self._severities = {split: np.zeros(n, np.float32)
                            for split, n in self.split_sizes.items()}
        self._metadata = {split: [""] * n for split, n in self.split_sizes.items()}
        self._signals: dict[str, h5py.Dataset] = {}
        self._file: h5py.File | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.partial, "w")
        try:
            self._create_layout(self._file)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _create_layout(self, handle: h5py.File) -> None:
        for split, n in self.split_sizes.items():
            group = handle.create_group(split)
            self._signals[split] = group.create_dataset(
                # maxshape only so that an empty split may still be chunked.
                "signals", shape=(n, *self._shape), maxshape=(None, *self._shape),
                dtype=np.float32, chunks=(1, *self._shape),
                compression="gzip" if self.compress else None,
                compression_opts=COMPRESSION_LEVEL if self.compress else None,
            )
            group.create_dataset("labels", shape=(n,), dtype=np.int64)
            group.create_dataset("severities", shape=(n,), dtype=np.float32)
            group.create_dataset("metadata", shape=(n,), dtype=STRING_DTYPE)

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Set attributes known only once every record is read (an import's per-file
        statistics); they are written on close, and must describe the same geometry."""
        merged = {**self.attrs, **attrs}
        if DatasetGeometry.from_attrs(merged) != self.geometry:
            raise InvalidInput("update_attrs may not change the dataset's geometry")
        self.attrs = merged

    def write(
        self, split: str, position: int, record: Any, encoded: EncodedSignal | None = None
    ) -> None:
        """Store ``record`` (signal, label, severity, metadata) at ``position`` of ``split``.

        With ``encoded`` (from ``encode_signal`` of the same signal) the compressed chunk is
        written as is; ``record.signal`` is then not read and may be ``None``.
        """
        self._check(split, position, 1)
        if encoded is not None:
            self._signals[split].id.write_direct_chunk(
                (position, *(0,) * len(self._shape)), encoded.data,
                filter_mask=encoded.filter_mask,
            )
        else:
            signal = np.asarray(record.signal, dtype=np.float32)
            if signal.shape != self._shape:
                raise InvalidInput(f"signal shape {signal.shape} != {self._shape}")
            self._signals[split][position] = signal
        self._note(split, position, record)

    def write_block(self, split: str, position: int, signals: np.ndarray, records: Sequence[Any]) -> None:
        """Store consecutive records from ``position`` on: their ``signals`` in one write (one
        HDF5 call instead of one per record), labels, severities and metadata from ``records``."""
        self._check(split, position, len(records))
        signals = np.asarray(signals, dtype=np.float32)
        if signals.shape != (len(records), *self._shape):
            raise InvalidInput(f"signals shape {signals.shape} != {(len(records), *self._shape)}")
        self._signals[split][position:position + len(records)] = signals
        for offset, record in enumerate(records):
            self._note(split, position + offset, record)

    def _check(self, split: str, position: int, count: int) -> None:
        if self._file is None:
            raise InvalidInput("DatasetWriter.write called outside its 'with' block")
        if split not in self.split_sizes or not 0 <= position <= position + count - 1 < self.split_sizes[split]:
            raise InvalidInput(f"no position {position + count - 1} in split {split!r} ({self.split_sizes})")

    def _note(self, split: str, position: int, record: Any) -> None:
        label = int(record.label)
        if not 0 <= label < self.geometry.num_classes:
            raise InvalidInput(f"label {label} outside [0, {self.geometry.num_classes})")
        self._labels[split][position] = label
        self._severities[split][position] = record.severity
        self._metadata[split][position] = json.dumps(record.metadata, sort_keys=True)
        self._written[split][position] = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gaps = {split: int((~done).sum()) for split, done in self._written.items()}
        complete = exc_type is None and not any(gaps.values())
        try:
            if complete and self._file is not None:
                self._flush(self._file)
        except BaseException:
            complete = False
            raise
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._signals.clear()
            if complete:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)
        if exc_type is None and not complete:
            raise DatasetFileError(f"dataset incomplete, records never written: {gaps}")

    def _flush(self, handle: h5py.File) -> None:
        for name, value in self.attrs.items():
            handle.attrs[name] = value
        for split in SPLITS:
            if self.split_sizes[split]:
                handle[split]["labels"][...] = self._labels[split]
                handle[split]["severities"][...] = self._severities[split]
                handle[split]["metadata"][...] = np.array(self._metadata[split], dtype=object)
