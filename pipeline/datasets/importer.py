"""Import recordings (MAT files, CSV / Parquet / NPY tables) into a dataset like any other.

The dataset takes the recordings' own classes (a ``LabelRule``: path patterns, a variable or
a manifest), channels, sampling rate (native, or resampled to a chosen rate), record and
window lengths (seconds or samples, windows with an optional overlap). Without a label rule,
labels come from the generator's 11 class keys as before (``matlabel``), at 20,480 Hz.

A file that cannot be used is listed in ``failures`` with its reason and the others go on;
so is a link found inside a folder that leads out of the import root or nowhere. Each
recording is cut into consecutive records (a tail shorter than a record is dropped and
counted in the metadata); a recording shorter than one record is refused rather than
zero-padded, because padding would teach a model that silence marks a class. Splits are made
by recording (the source file, or the manifest's ``group``): a recording's records never
land in two splits. Every path is resolved (symlinks included) and must stay under the
import root. Memory is bounded by one file. MAT files are planned first from their headers
and small variables (label, rate, length: every split is sized before a signal is read),
then each is read once and its records written straight to their split. Tables, and an
import where a file's full read breaks its plan (damaged data, non-finite samples), go
through an uncompressed staging file instead, until every label is known and the split can
be made.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.geometry import DatasetGeometry, window_samples
from pipeline.datasets.hdf5 import DatasetWriter, check_dataset_id, dataset_attrs, split_indices
from pipeline.datasets.labels import LabelRule
from pipeline.datasets.matlabel import check_label
from pipeline.datasets.matread import MAX_ELEMENTS, MatPlan, plan_mat, read_signal, resample
from pipeline.datasets.scratch import Scratch
from pipeline.datasets.tables import TABLE_SUFFIXES, read_table
from pipeline.domain import CLASS_KEYS, DISPLAY_NAMES, FS
from pipeline.errors import DatasetFileError, InvalidInput, MatFileError, UnsafePath
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.signals.config import check_split_ratios
from pipeline.signals.generator import Record
from pipeline.signals.normalize import check_rule, normalize_records

__all__ = ["IMPORTER_VERSION", "MAT_SUFFIXES", "RECORDING_SUFFIXES", "ImportedDataset",
           "RecordingLayout", "import_mat_files", "import_recordings", "resolve_under_root"]

# 1.1: labels by precedence, files checked first; 1.2: optional z-score per file or record;
# 1.3: label rules, channels, native rates, record/window lengths, splits by recording
IMPORTER_VERSION = "pfd-import/1.3"
MAT_SUFFIXES = (".mat",)
RECORDING_SUFFIXES = MAT_SUFFIXES + TABLE_SUFFIXES
_RECORD_SECONDS, _WINDOW_SECONDS = 5.0, 1.0
_MAX_REASONS_IN_ERROR = 20
_OUT_OF_MEMORY = "ran out of memory reading it"


def resolve_under_root(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Resolve ``path`` (relative paths are taken from ``root``) and keep it under ``root``.

    Symlinks are resolved first, so a link pointing out of ``root`` is refused like
    ``..`` or an absolute path elsewhere.

    Raises:
        UnsafePath: the resolved path is not ``root`` or below it.
    """
    try:
        base = Path(root).resolve(strict=True)
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    except (OSError, ValueError, RuntimeError) as error:
        # ValueError: an embedded NUL byte; RuntimeError: a symlink loop.
        raise UnsafePath(f"cannot resolve {str(path)!r} under {str(root)!r}: {error}") from None
    if resolved != base and base not in resolved.parents:
        raise UnsafePath(f"path {str(path)!r} resolves outside the import root {str(base)!r}")
    return resolved


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
class ImportedDataset:
    """What an import produced; ``failures`` lists ``{"path", "reason"}`` per refused file.

    ``n_files`` counts every file tried, refused links included.
    """

    hdf5_path: str
    n_files: int
    n_records: int
    class_counts: dict[str, int]
    split_counts: dict[str, int]
    failures: list[dict[str, str]] = field(default_factory=list)
    config_hash: str = ""
    duration_s: float = 0.0
    class_keys: list[str] = field(default_factory=list)


@dataclass
class _Read:
    """One recording read: samples ``[C, n]`` at ``fs``, its class key and metadata."""

    samples: np.ndarray
    fs: float
    key: str
    metadata: dict[str, Any]
    group: str


def _expand(paths: Sequence[str | os.PathLike[str]], root: Path,
            suffixes: tuple[str, ...]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files to read, and the entries found in folders that cannot be (with the reason).

    A path given outside ``root`` refuses the whole request; an entry found inside a folder
    that links out of ``root`` or nowhere is refused alone.
    """
    files: list[Path] = []
    refused: list[dict[str, str]] = []
    for item in paths:
        resolved = resolve_under_root(item, root)
        if not resolved.is_dir():
            files.append(resolved)
            continue
        for found in sorted(p for p in resolved.rglob("*") if p.suffix.lower() in suffixes):
            rel = found.relative_to(root).as_posix()
            try:
                target = resolve_under_root(found, root)
            except UnsafePath as error:
                refused.append({"path": rel, "reason": str(error)})
                continue
            if target.is_file():
                files.append(target)
            elif not target.exists():
                refused.append({"path": rel, "reason": f"a link to {str(target)!r}, which "
                                                       f"does not exist"})
    return list(dict.fromkeys(files)), refused  # a file named twice is imported once


def import_recordings(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str], dataset_id: str, *,
    labels: LabelRule | None = None, layout: RecordingLayout | None = None,
    on_progress: ProgressFn = no_progress, should_stop: StopFn = never_stop,
    split_ratios: Sequence[float] = (0.70, 0.15, 0.15), seed: int = 0,
    max_elements: int = MAX_ELEMENTS, overwrite: bool = False, label: str | None = None,
    normalize: str = "none", suffixes: tuple[str, ...] = RECORDING_SUFFIXES,
) -> ImportedDataset:
    """Import recordings (directories are searched for ``suffixes``) into ``{dataset_id}.h5``.

    ``labels`` is the label rule (the dataset then has the rule's classes); without one,
    ``label`` (a generator class key) is every file's label, or each MAT file's own label
    variable, folder or name gives it (``read_mat``). ``normalize`` (``"none"``, ``"file"``,
    ``"record"``) z-scores each channel per file or per record as it is written; the rule and
    the statistics go into the dataset's config and each record's metadata, and a file that
    is constant (or holds a constant record, per record) is refused alone. Progress: 0-90 %
    once per file read, the rest while writing the split file. An existing
    ``{dataset_id}.h5`` is refused unless ``overwrite`` (a retry of a crashed import).

    Raises:
        InvalidInput: no paths, a bad root, ratios, label, layout or normalisation rule; a
            class with too few recordings to split.
        UnsafePath: a path given lies outside ``root``.
        MatFileError: not one file could be read; the message names the first
            ``_MAX_REASONS_IN_ERROR`` reasons and its ``failures`` attribute holds them all.
        StopRequested: ``should_stop()`` answered true.
    """
    started = time.perf_counter()
    check_dataset_id(dataset_id)
    ratios = check_split_ratios(tuple(split_ratios))
    layout = layout or RecordingLayout()
    if labels is not None and label is not None:
        raise InvalidInput("give a label rule or one label for every file, not both")
    if labels is None:
        check_label(label)
    check_rule(normalize)
    base = Path(root).resolve()
    if not base.is_dir():
        raise InvalidInput(f"import root is not a directory: {root}")
    if not paths and labels is not None and labels.manifest is not None:
        paths = list(labels.manifest.rows)
    if not paths:
        raise InvalidInput("no files or folders given")
    files, refused = _expand(paths, base, suffixes)
    if not files and not refused:
        raise MatFileError(f"no {', '.join(suffixes)} files found in {[str(p) for p in paths]}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    hdf5_path = output / f"{dataset_id}.h5"
    if hdf5_path.exists() and not overwrite:  # refuse before reading every file
        raise DatasetFileError(f"dataset file already exists: {hdf5_path}")
    request = _Request(base, layout, labels, label, max_elements, normalize, ratios, seed,
                       suffixes, files, refused, hdf5_path, overwrite, on_progress, should_stop)
    written = None
    if all(path.suffix.lower() in MAT_SUFFIXES for path in files):
        written = _import_planned(request)
    if written is None:  # tables, or a file whose full read broke its plan
        written = _import_staged(request, output / f"{dataset_id}.staging.h5")
    counts = np.bincount(np.asarray(written.codes), minlength=len(written.class_keys))
    return ImportedDataset(
        hdf5_path=str(hdf5_path), n_files=len(files) + len(refused), n_records=len(written.codes),
        class_counts={key: int(counts[k]) for k, key in enumerate(written.class_keys) if counts[k]},
        split_counts={s: len(v) for s, v in written.splits.items()}, failures=written.failures,
        config_hash=written.config_hash, duration_s=time.perf_counter() - started,
        class_keys=list(written.class_keys),
    )


@dataclass
class _Request:
    """An import's inputs once checked: what both ways of writing the dataset need."""

    base: Path
    layout: RecordingLayout
    labels: LabelRule | None
    label: str | None
    max_elements: int
    normalize: str
    ratios: tuple[float, float, float]
    seed: int
    suffixes: tuple[str, ...]
    files: list[Path]
    refused: list[dict[str, str]]  # links found in folders, refused unread
    hdf5_path: Path
    overwrite: bool
    on_progress: ProgressFn
    should_stop: StopFn

    def reader(self) -> _Reader:
        """A reader in its initial state (no rate taken from a file yet, no statistics)."""
        return _Reader(self.base, self.layout, self.labels, self.label, self.max_elements,
                       self.normalize)


@dataclass
class _Written:
    """What was written: every record's class code, the splits, and the files refused."""

    codes: list[int]
    class_keys: Sequence[str]
    splits: dict[str, np.ndarray]
    config_hash: str
    failures: list[dict[str, str]]  # every file refused, with the reason


@dataclass
class _Dataset:
    """The dataset's classes, splits and attributes, fixed once every label is known."""

    class_keys: Sequence[str]
    codes: list[int]
    splits: dict[str, np.ndarray]
    geometry: DatasetGeometry

    @classmethod
    def of(cls, request: _Request, reader: _Reader, keys: list[str], groups: list[str],
           failures: list[dict[str, str]]) -> _Dataset:
        """Classes from the label rule, splits by recording; no record read at all is refused."""
        if not keys:
            kind = "MAT file" if _source(request.suffixes) == "mat_import" else "file"
            raise _nothing_imported(failures, kind)
        labels, layout = request.labels, request.layout
        class_keys = labels.class_keys(keys) if labels is not None else CLASS_KEYS
        index = {key: k for k, key in enumerate(class_keys)}
        codes = [index[key] for key in keys]
        record, window, hop = layout.lengths(reader.rate)  # type: ignore[arg-type]
        geometry = DatasetGeometry(
            class_keys=tuple(class_keys), sampling_rate=float(reader.rate),  # type: ignore[arg-type]
            record_length=record, window_length=window, window_hop=hop,
            channels=layout.channel_names or layout.channels or ("signal",),
            normalization=request.normalize,
            display_names={**{k: v for k, v in DISPLAY_NAMES.items() if k in index},
                           **(dict(labels.display_names) if labels is not None else {})},
        )
        # A user's own recordings must fill every split with every class; the generator's
        # one-record files (no label rule) keep their historic leniency.
        splits = split_indices(codes, request.ratios, request.seed, groups=groups,
                               strict=labels is not None)
        return cls(class_keys, codes, splits, geometry)

    def attrs(self, request: _Request, reader: _Reader) -> tuple[dict[str, Any], str]:
        """The dataset file's attributes and config hash (per-file statistics included)."""
        config = {"source": _source(request.suffixes),
                  "files": [p.relative_to(request.base).as_posix() for p in request.files],
                  "split_ratios": list(request.ratios), "seed": int(request.seed),
                  "max_elements": int(request.max_elements), "label": request.label,
                  "label_rule": _rule_config(request.labels), "layout": asdict(request.layout),
                  "normalization": _normalization_config(request.normalize, reader.file_stats)}
        config_hash = hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        attrs = dataset_attrs(source=_source(request.suffixes), split_ratios=request.ratios,
                              seed=request.seed, generator_config=config,
                              generator_config_hash=config_hash,
                              generator_version=IMPORTER_VERSION, geometry=self.geometry)
        return attrs, config_hash

    def sizes(self) -> dict[str, int]:
        """Records in each split."""
        return {split: len(members) for split, members in self.splits.items()}

    def records(self, first: int, last: int, rows: Sequence[tuple[float, dict[str, Any]]]) -> list[Record]:
        """Records ``first`` to ``last`` (signals left out) from their severities and metadata."""
        return [Record(None, self.codes[r], self.class_keys[self.codes[r]], *rows[r - first])
                for r in range(first, last)]


class _PlanBroken(Exception):
    """A planned file failed its full read, or read other than its headers said."""


def _import_planned(request: _Request) -> _Written | None:
    """Plan every MAT file from its headers, size the dataset, then read each file once and
    write its records straight to their split: no staged copy. None when a file's full read
    breaks its plan (damaged data, non-finite samples, a file changed meanwhile): the partial
    dataset is dropped, and the import goes the staged way, which lists that file's reason."""
    reader = request.reader()
    planned, failures = reader.plan(request.files, request.on_progress, request.should_stop)
    failures = request.refused + failures
    keys = [p.key for p in planned for _ in range(p.n_records)]
    groups = [p.group for p in planned for _ in range(p.n_records)]
    dataset = _Dataset.of(request, reader, keys, groups, failures)
    split_of = np.empty(len(keys), dtype=np.int64)
    position = np.empty(len(keys), dtype=np.int64)
    names = list(dataset.splits)
    for k, members in enumerate(dataset.splits.values()):
        split_of[members], position[members] = k, np.arange(len(members))
    attrs, _ = dataset.attrs(request, reader)
    try:
        with DatasetWriter(request.hdf5_path, attrs, dataset.sizes(),
                           overwrite=request.overwrite, compress=False) as writer:
            first = 0
            for k, file in enumerate(planned):
                check_stop(request.should_stop)
                if k + 1 < len(planned):  # the disk reads the next file while this one is written
                    _prefetch(planned[k + 1].plan.path)
                try:
                    signals, rows = reader.records(reader.load(file), file.path_rel)
                except (MatFileError, MemoryError) as error:
                    raise _PlanBroken from error
                last = first + file.n_records
                # A recording's records are consecutive in the plan and in their split.
                writer.write_block(names[split_of[first]], int(position[first]), signals,
                                   dataset.records(first, last, rows))
                first = last
                request.on_progress(0.05 + 0.95 * (k + 1) / len(planned), "reading recordings",
                                    files_done=k + 1, files_total=len(planned),
                                    failures=len(failures))
            attrs, config_hash = dataset.attrs(request, reader)
            writer.update_attrs(attrs)
    except _PlanBroken:
        return None
    return _Written(dataset.codes, dataset.class_keys, dataset.splits, config_hash, failures)


def _import_staged(request: _Request, staging: Path) -> _Written:
    """Read every file once into an uncompressed staging file, then copy the records into
    their splits: memory stays bounded by one file whatever the inputs (tables included)."""
    reader = request.reader()
    try:
        stage = reader.stage(request.files, staging, request.on_progress, request.should_stop)
        failures = request.refused + stage.failures
        dataset = _Dataset.of(request, reader, stage.keys, stage.groups, failures)
        attrs, config_hash = dataset.attrs(request, reader)
        _write(request.hdf5_path, attrs, dataset, staging, stage.rows, request.overwrite,
               request.on_progress, request.should_stop)
    finally:
        with suppress(FileNotFoundError):
            staging.unlink()
    return _Written(dataset.codes, dataset.class_keys, dataset.splits, config_hash, failures)


def _source(suffixes: tuple[str, ...]) -> str:
    return "mat_import" if set(suffixes) <= set(MAT_SUFFIXES) else "table_import"


def _rule_config(rule: LabelRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {"patterns": dict(rule.patterns), "variable": rule.variable,
            "manifest": rule.manifest is not None,
            "classes": list(rule.classes) if rule.classes is not None else None}


def _write(hdf5_path: Path, attrs: dict[str, Any], dataset: _Dataset, staging: Path,
           rows: list[tuple[float, dict[str, Any]]], overwrite: bool, on_progress: ProgressFn,
           should_stop: StopFn) -> None:
    """Copy the staged records into their splits, a run of consecutive staged rows per write
    (a recording's records are consecutive in both)."""
    total = len(dataset.codes)
    with h5py.File(staging, "r") as stage, DatasetWriter(
            hdf5_path, attrs, dataset.sizes(), overwrite=overwrite, compress=False) as writer:
        done = 0
        for split, members in dataset.splits.items():
            position = 0
            for run in np.split(members, np.flatnonzero(np.diff(members) != 1) + 1) if members.size else []:
                check_stop(should_stop)
                first, last = int(run[0]), int(run[-1]) + 1
                records = dataset.records(first, last, rows[first:last])
                writer.write_block(split, position, stage["signals"][first:last], records)
                position += len(records)
                done += len(records)
                on_progress(0.9 + 0.1 * done / total, "writing dataset",
                            records_done=done, records_total=total)


def _normalization_config(rule: str, file_stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a reader needs to treat new data like this dataset's (the dataset config's part)."""
    if rule == "none":
        return {"rule": "none"}
    if rule == "record":
        return {"rule": "record", "applies_to_new_data": "z-score each record (each channel) by "
                "its own mean and std (each record's are in its metadata)"}
    return {"rule": "file", "files": file_stats,
            "applies_to_new_data": "only to data imported with normalize='file': the statistics "
            "belong to a whole source file, which a record from elsewhere does not carry"}


def _nothing_imported(failures: list[dict[str, str]], kind: str) -> MatFileError:
    reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in failures[:_MAX_REASONS_IN_ERROR])
    more = len(failures) - _MAX_REASONS_IN_ERROR
    error = MatFileError(f"no {kind} could be imported ({len(failures)} failed): {reasons}"
                         + (f"; and {more} more" if more > 0 else ""))
    # A job's error message stays short; the caller keeps every reason in its own record.
    error.failures = failures  # type: ignore[attr-defined]
    return error


@dataclass
class _Staged:
    keys: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    rows: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Planned:
    """A MAT file planned from its headers: its class, recording and number of records."""

    plan: MatPlan
    path_rel: str
    key: str
    group: str
    metadata: dict[str, Any]
    n_records: int


class _Reader:
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
             should_stop: StopFn) -> tuple[list[_Planned], list[dict[str, str]]]:
        """Plan every MAT file from its headers and small variables (progress 0-5 %); a file
        refused here is one its full read would refuse for the same reason."""
        planned: list[_Planned] = []
        failures: list[dict[str, str]] = []
        for k, path in enumerate(files):
            check_stop(should_stop)
            rel = path.relative_to(self.base).as_posix()
            try:
                planned.append(self._planned(self._plan_mat(path), rel))
            except MatFileError as error:
                failures.append({"path": rel, "reason": str(error)})
            except MemoryError:
                failures.append({"path": rel, "reason": _OUT_OF_MEMORY})
            on_progress(0.05 * (k + 1) / len(files), "planning the import", files_done=k + 1,
                        files_total=len(files), failures=len(failures))
        return planned, failures

    def stage(self, files: list[Path], staging: Path, on_progress: ProgressFn,
              should_stop: StopFn) -> _Staged:
        """Read every file; records go to ``staging``, failures are listed with the reason."""
        staged = _Staged()
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
                    staged.failures.append({"path": rel, "reason": _OUT_OF_MEMORY})
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

    def _planned(self, plan: MatPlan, rel: str) -> _Planned:
        row, _ = self._manifest_row(rel)
        metadata, key = self._resolve(dict(plan.metadata), row, plan.label, plan.rate, rel)
        record_length, _, _ = self.layout.lengths(plan.rate)
        _check_long_enough(plan.length, plan.rate, record_length)
        return _Planned(plan, rel, key, str(row.get("group") or rel), metadata,
                        plan.length // record_length)

    def load(self, planned: _Planned) -> _Read:
        """Read the signal a plan describes."""
        read = read_signal(planned.plan, self.scratch)
        samples = read.signal if read.signal.ndim == 2 else read.signal[None]
        return _Read(samples, read.fs, planned.key, planned.metadata, planned.group)

    def _read(self, path: Path, rel: str) -> _Read:
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
        return _Read(samples, fs, key, metadata, str(row.get("group") or rel))

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

    def records(self, read: _Read, rel: str) -> tuple[np.ndarray, list[tuple[float, dict[str, Any]]]]:
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


def _prefetch(path: Path) -> None:
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


def import_mat_files(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str], dataset_id: str, **options: Any,
) -> ImportedDataset:
    """``import_recordings`` of MAT files only (folders are searched for ``*.mat``)."""
    return import_recordings(paths, root, output_dir, dataset_id, suffixes=MAT_SUFFIXES, **options)
