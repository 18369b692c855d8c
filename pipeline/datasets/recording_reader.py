"""How recordings become records: the layout (channels, rate, record and window lengths) and
the reader that plans MAT files from their headers, loads them, or reads tables whole, and
cuts each recording into (normalised) records. ``importer`` decides where the records go."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.geometry import window_samples
from pipeline.datasets.labels import LabelRule
from pipeline.datasets.matread import MatPlan, plan_mat, read_signal, resample
from pipeline.datasets.scratch import Scratch
from pipeline.datasets.tables import read_table
from pipeline.domain import FS
from pipeline.errors import InvalidInput, MatFileError
from pipeline.progress import ProgressFn, StopFn, check_stop
from pipeline.signals.normalize import normalize_records

__all__ = ["MAT_SUFFIXES", "OUT_OF_MEMORY", "Planned", "Read", "RecordingLayout", "RecordingReader",
           "Staged", "prefetch"]

MAT_SUFFIXES = (".mat",)
OUT_OF_MEMORY = "ran out of memory reading it"
_RECORD_SECONDS, _WINDOW_SECONDS = 5.0, 1.0


@dataclass(frozen=True)
class RecordingLayout:
    """How recordings become records and windows.

    ``channels``: names or patterns of the signals to keep (MAT variables, table columns),
    stacked as channels; None keeps the one signal found by name. ``channel_names`` names them
    in the dataset (``DE``, ``FE``; default: the patterns themselves). ``sampling_rate``: the
    dataset's rate (recordings are resampled to it); None keeps the native rate, which every
    recording must then share. ``source_fs``: the rate of recordings that do not store one
    (a manifest's ``fs`` column wins). Records and windows: seconds or samples at the dataset
    rate (5 s records and 1 s windows unless given); ``overlap`` is the fraction of a window
    its successor repeats.
    """

    channels: tuple[str, ...] | None = None
    channel_names: tuple[str, ...] | None = None
    sampling_rate: float | None = FS
    source_fs: float | None = None
    record_seconds: float | None = None
    record_samples: int | None = None
    window_seconds: float | None = None
    window_samples: int | None = None
    overlap: float = 0.0

    def __post_init__(self) -> None:
        if self.channels is not None:
            if not self.channels or len(set(self.channels)) != len(self.channels):
                raise InvalidInput(f"channels must be distinct names or patterns, got {self.channels}")
            object.__setattr__(self, "channels", tuple(self.channels))
        if self.channel_names is not None:
            if self.channels is None or len(self.channel_names) != len(self.channels):
                raise InvalidInput(f"channel_names {self.channel_names} must name each of the channels "
                                   f"{self.channels}, in order")
            object.__setattr__(self, "channel_names", tuple(self.channel_names))
        for name in ("sampling_rate", "source_fs"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidInput(f"{name} must be a positive rate in Hz, got {value}")
        if not 0.0 <= self.overlap < 1.0:
            raise InvalidInput(f"overlap must lie in [0, 1), got {self.overlap}")
        self.lengths(self.sampling_rate or FS)  # refuse both-given or non-positive lengths now

    def lengths(self, rate: float) -> tuple[int, int, int]:
        """Record length, window length and window hop in samples at ``rate``."""
        record = window_samples(self.record_seconds, self.record_samples, rate, "record length")
        window = window_samples(self.window_seconds, self.window_samples, rate, "window length")
        record = record or int(round(_RECORD_SECONDS * rate))
        window = window or int(round(_WINDOW_SECONDS * rate))
        hop = max(1, int(round(window * (1.0 - self.overlap))))
        return record, window, hop


@dataclass
class Read:
    """One recording read: samples ``[C, n]`` at ``fs``, its class key and metadata."""

    samples: np.ndarray
    fs: float
    key: str
    metadata: dict[str, Any]
    group: str


@dataclass
class Staged:
    """Files read into a staging file: each record's class key, recording, severity and
    metadata, in the staging file's order, and the files refused."""

    keys: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    rows: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Planned:
    """A MAT file planned from its headers: its class, recording and number of records."""

    plan: MatPlan
    path_rel: str
    key: str
    group: str
    metadata: dict[str, Any]
    n_records: int


class RecordingReader:
    """Reads files into records: planned from headers (MAT) then loaded, or staged whole."""

    def __init__(self, base: Path, layout: RecordingLayout, rule: LabelRule | None,
                 label: str | None, max_elements: int, normalize: str) -> None:
        self.base, self.layout, self.rule, self.label = base, layout, rule, label
        self.max_elements, self.normalize = max_elements, normalize
        self.rate: float | None = layout.sampling_rate  # None until the first native rate
        self.file_stats: dict[str, dict[str, Any]] = {}
        # One file's records are written before the next file is read: their arrays reuse
        # the same buffers.
        self.scratch = Scratch()

    def plan(self, files: list[Path], on_progress: ProgressFn,
             should_stop: StopFn) -> tuple[list[Planned], list[dict[str, str]]]:
        """Plan every MAT file from its headers and small variables (progress 0-5 %); a file
        refused here is one its full read would refuse for the same reason."""
        planned: list[Planned] = []
        failures: list[dict[str, str]] = []
        for k, path in enumerate(files):
            check_stop(should_stop)
            rel = path.relative_to(self.base).as_posix()
            try:
                planned.append(self._planned(self._plan_mat(path), rel))
            except MatFileError as error:
                failures.append({"path": rel, "reason": str(error)})
            except MemoryError:
                failures.append({"path": rel, "reason": OUT_OF_MEMORY})
            on_progress(0.05 * (k + 1) / len(files), "planning the import", files_done=k + 1,
                        files_total=len(files), failures=len(failures))
        return planned, failures

    def stage(self, files: list[Path], staging: Path, on_progress: ProgressFn,
              should_stop: StopFn) -> Staged:
        """Read every file; records go to ``staging``, failures are listed with the reason."""
        staged = Staged()
        with h5py.File(staging, "w") as handle:
            signals: h5py.Dataset | None = None
            for k, path in enumerate(files):
                check_stop(should_stop)
                rel = path.relative_to(self.base).as_posix()
                try:
                    read = self._read(path, rel)
                    block, rows = self.records(read, rel)
                except MatFileError as error:
                    staged.failures.append({"path": rel, "reason": str(error)})
                except MemoryError:
                    # Budgets keep a file's reading bounded; should one still not fit, it is
                    # this file's failure, and its memory is free again for the next.
                    staged.failures.append({"path": rel, "reason": OUT_OF_MEMORY})
                else:
                    if signals is None:
                        shape = block.shape[1:]
                        signals = handle.create_dataset(
                            "signals", shape=(0, *shape), maxshape=(None, *shape),
                            dtype=np.float32, chunks=(1, *shape))
                    start = signals.shape[0]
                    signals.resize(start + len(block), axis=0)
                    signals[start:] = block
                    staged.keys += [read.key] * len(rows)
                    staged.groups += [read.group] * len(rows)
                    staged.rows += rows
                on_progress(0.9 * (k + 1) / len(files), "reading recordings", files_done=k + 1,
                            files_total=len(files), failures=len(staged.failures))
        return staged

    def _manifest_row(self, rel: str) -> tuple[dict[str, Any], float | None]:
        row = dict(self.rule.manifest.row(rel)) if self.rule and self.rule.manifest else {}
        return row, _number(row.get("fs"), "the manifest's fs") or self.layout.source_fs

    def _plan_mat(self, path: Path) -> MatPlan:
        _, source_fs = self._manifest_row(path.relative_to(self.base).as_posix())
        return plan_mat(path, root=self.base, max_elements=self.max_elements,
                        label=self.label if self.rule is None else None,
                        channels=self.layout.channels, rate=self.layout.sampling_rate,
                        source_fs=source_fs, find_label=self.rule is None)

    def _planned(self, plan: MatPlan, rel: str) -> Planned:
        row, _ = self._manifest_row(rel)
        metadata, key = self._resolve(dict(plan.metadata), row, plan.label, plan.rate, rel)
        record_length, _, _ = self.layout.lengths(plan.rate)
        _check_long_enough(plan.length, plan.rate, record_length)
        return Planned(plan, rel, key, str(row.get("group") or rel), metadata,
                        plan.length // record_length)

    def load(self, planned: Planned) -> Read:
        """Read the signal a plan describes."""
        read = read_signal(planned.plan, self.scratch)
        samples = read.signal if read.signal.ndim == 2 else read.signal[None]
        return Read(samples, read.fs, planned.key, planned.metadata, planned.group)

    def _read(self, path: Path, rel: str) -> Read:
        if path.suffix.lower() in MAT_SUFFIXES:
            return self.load(self._planned(self._plan_mat(path), rel))
        row, source_fs = self._manifest_row(rel)
        samples, columns = read_table(path, self.layout.channels, self.max_elements)
        if source_fs is None:
            raise MatFileError("no sampling rate: a table stores none, so give source_fs or "
                               "an fs column in the manifest")
        fs = self.layout.sampling_rate or source_fs
        if samples.shape[1] * fs / source_fs > self.max_elements:
            raise MatFileError(f"resampling to {fs:g} Hz exceeds the limit of "
                               f"{self.max_elements} elements")
        samples = resample(samples, source_fs, fs).astype(np.float32)
        metadata = {"format": path.suffix.lower().lstrip("."), "columns": columns,
                    "source_fs": source_fs}
        metadata, key = self._resolve(metadata, row, self.label, fs, rel)
        return Read(samples, fs, key, metadata, str(row.get("group") or rel))

    def _resolve(self, metadata: dict[str, Any], row: dict[str, Any], key: str | None,
                 fs: float, rel: str) -> tuple[dict[str, Any], str]:
        """The manifest's columns join the metadata; the label rule names the class; the
        first file's native rate becomes the dataset's."""
        metadata.update({k: v for k, v in row.items() if k not in ("path", "label")})
        if self.rule is not None:
            key = self.rule.label(rel, metadata)
        if key is None:
            raise MatFileError("no label found: no label variable and no class key in the file "
                               "or folder names")
        if self.rate is None:
            self.rate = fs  # the first file's native rate is the dataset's
        elif fs != self.rate:
            raise MatFileError(f"recorded at {fs:g} Hz, but this dataset keeps the native rate "
                               f"{self.rate:g} Hz of its first file: give a sampling rate to "
                               "resample every file to")
        return metadata, key

    def records(self, read: Read, rel: str) -> tuple[np.ndarray, list[tuple[float, dict[str, Any]]]]:
        """The recording cut into records, normalised by the rule: their signals ``[n, L]`` (one
        channel) or ``[n, C, L]`` in one array, and each one's severity and metadata."""
        record_length, _, _ = self.layout.lengths(read.fs)
        size = read.samples.shape[1]
        _check_long_enough(size, read.fs, record_length)
        n = size // record_length
        records = read.samples[:, : n * record_length].reshape(
            len(read.samples), n, record_length).transpose(1, 0, 2)
        if self.normalize == "none":  # laid out record by record, in a reused buffer
            block = self.scratch.array("records", records.shape, np.float32)
            np.copyto(block, records)
            records, stats = block, [{"rule": "none"}] * n
        else:
            try:
                records, stats = normalize_records(records, self.normalize)
            except InvalidInput as error:
                raise MatFileError(f"cannot normalise per {self.normalize}: {error}") from None
        if self.normalize == "file":
            self.file_stats[rel] = {k: v for k, v in stats[0].items() if k != "rule"}
        severity = read.metadata.get("severity")
        severity = float(severity) if isinstance(severity, (int, float)) else float("nan")
        rows = [(severity, dict(read.metadata, fault=read.key, label=read.key, source_file=rel,
                                recording=read.group, segment=k, segments=n,
                                samples_dropped=int(size - n * record_length),
                                normalization=stats[k])) for k in range(n)]
        return (records[:, 0] if records.shape[1] == 1 else records), rows


def prefetch(path: Path) -> None:
    """Ask the kernel to start reading ``path`` into its cache, in the background."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return  # only a hint: the read that follows reports what is wrong with the file
    try:
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(handle)


def _check_long_enough(size: int, fs: float, record_length: int) -> None:
    if size < record_length:
        raise MatFileError(f"signal too short: {size} samples at {fs:g} Hz, a record "
                           f"needs {record_length}")


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise MatFileError(f"{what} is {value!r}, not a positive number")
    return float(value)
