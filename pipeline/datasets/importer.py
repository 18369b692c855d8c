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
import root. Memory is bounded by one file: records go to an uncompressed staging file
until every label is known and the split can be made.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
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
from pipeline.datasets.matread import MAX_ELEMENTS, read_mat, resample
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
    staging = output / f"{dataset_id}.staging.h5"
    reader = _Reader(base, layout, labels, label, max_elements, normalize)
    try:
        stage = reader.stage(files, staging, on_progress, should_stop)
        failures = refused + stage.failures
        if not stage.keys:
            raise _nothing_imported(failures, "MAT file" if _source(suffixes) == "mat_import" else "file")
        class_keys = labels.class_keys(stage.keys) if labels is not None else CLASS_KEYS
        index = {key: k for k, key in enumerate(class_keys)}
        codes = [index[key] for key in stage.keys]
        rate = reader.rate
        record, window, hop = layout.lengths(rate)  # type: ignore[arg-type]
        geometry = DatasetGeometry(
            class_keys=tuple(class_keys), sampling_rate=float(rate),  # type: ignore[arg-type]
            record_length=record, window_length=window, window_hop=hop,
            channels=layout.channel_names or layout.channels or ("signal",), normalization=normalize,
            display_names={**{k: v for k, v in DISPLAY_NAMES.items() if k in index},
                           **(dict(labels.display_names) if labels is not None else {})},
        )
        config = {"source": _source(suffixes), "files": [p.relative_to(base).as_posix() for p in files],
                  "split_ratios": list(ratios), "seed": int(seed),
                  "max_elements": int(max_elements), "label": label,
                  "label_rule": _rule_config(labels), "layout": asdict(layout),
                  "normalization": _normalization_config(normalize, reader.file_stats)}
        config_hash = hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        attrs = dataset_attrs(source=_source(suffixes), split_ratios=ratios, seed=seed,
                              generator_config=config, generator_config_hash=config_hash,
                              generator_version=IMPORTER_VERSION, geometry=geometry)
        # A user's own recordings must fill every split with every class; the generator's
        # one-record files (no label rule) keep their historic leniency.
        splits = split_indices(codes, ratios, seed, groups=stage.groups, strict=labels is not None)
        _write(hdf5_path, attrs, splits, staging, codes, class_keys, stage.rows, overwrite,
               on_progress, should_stop)
    finally:
        with suppress(FileNotFoundError):
            staging.unlink()
    counts = np.bincount(np.asarray(codes), minlength=len(class_keys))
    return ImportedDataset(
        hdf5_path=str(hdf5_path), n_files=len(files) + len(refused), n_records=len(codes),
        class_counts={key: int(counts[k]) for k, key in enumerate(class_keys) if counts[k]},
        split_counts={s: len(v) for s, v in splits.items()}, failures=failures,
        config_hash=config_hash, duration_s=time.perf_counter() - started,
        class_keys=list(class_keys),
    )


def _source(suffixes: tuple[str, ...]) -> str:
    return "mat_import" if set(suffixes) <= set(MAT_SUFFIXES) else "table_import"


def _rule_config(rule: LabelRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {"patterns": dict(rule.patterns), "variable": rule.variable,
            "manifest": rule.manifest is not None,
            "classes": list(rule.classes) if rule.classes is not None else None}


def _write(hdf5_path: Path, attrs: dict[str, Any], splits: dict[str, np.ndarray], staging: Path,
           codes: list[int], class_keys: Sequence[str], rows: list[tuple[float, dict[str, Any]]],
           overwrite: bool, on_progress: ProgressFn, should_stop: StopFn) -> None:
    """Copy the staged records into their splits, a run of consecutive staged rows per write
    (a recording's records are consecutive in both)."""
    total = len(codes)
    sizes = {s: len(v) for s, v in splits.items()}
    with h5py.File(staging, "r") as stage, DatasetWriter(
            hdf5_path, attrs, sizes, overwrite=overwrite, compress=False) as writer:
        done = 0
        for split, members in splits.items():
            position = 0
            for run in np.split(members, np.flatnonzero(np.diff(members) != 1) + 1) if members.size else []:
                check_stop(should_stop)
                first, last = int(run[0]), int(run[-1]) + 1
                records = [Record(None, codes[r], class_keys[codes[r]], rows[r][0], rows[r][1])
                           for r in range(first, last)]
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


class _Reader:
    """Reads each file once and appends its (normalised) records to the staging file."""

    def __init__(self, base: Path, layout: RecordingLayout, rule: LabelRule | None,
                 label: str | None, max_elements: int, normalize: str) -> None:
        self.base, self.layout, self.rule, self.label = base, layout, rule, label
        self.max_elements, self.normalize = max_elements, normalize
        self.rate: float | None = layout.sampling_rate  # None until the first native rate
        self.file_stats: dict[str, dict[str, Any]] = {}

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
                    records = list(self._records(read, rel))
                except MatFileError as error:
                    staged.failures.append({"path": rel, "reason": str(error)})
                except MemoryError:
                    # Budgets keep a file's reading bounded; should one still not fit, it is
                    # this file's failure, and its memory is free again for the next.
                    staged.failures.append({"path": rel, "reason": "ran out of memory reading it"})
                else:
                    if signals is None:
                        shape = records[0][0].shape
                        signals = handle.create_dataset(
                            "signals", shape=(0, *shape), maxshape=(None, *shape),
                            dtype=np.float32, chunks=(1, *shape))
                    start = signals.shape[0]
                    signals.resize(start + len(records), axis=0)
                    signals[start:] = np.stack([signal for signal, _, _ in records])
                    for _, severity, metadata in records:
                        staged.keys.append(read.key)
                        staged.groups.append(read.group)
                        staged.rows.append((severity, metadata))
                on_progress(0.9 * (k + 1) / len(files), "reading recordings", files_done=k + 1,
                            files_total=len(files), failures=len(staged.failures))
        return staged

    def _read(self, path: Path, rel: str) -> _Read:
        row = dict(self.rule.manifest.row(rel)) if self.rule and self.rule.manifest else {}
        source_fs = _number(row.get("fs"), "the manifest's fs") or self.layout.source_fs
        if path.suffix.lower() in MAT_SUFFIXES:
            read = read_mat(path, root=self.base, max_elements=self.max_elements,
                            label=self.label if self.rule is None else None,
                            channels=self.layout.channels, rate=self.rate, source_fs=source_fs,
                            find_label=self.rule is None)
            samples = read.signal if read.signal.ndim == 2 else read.signal[None]
            metadata, fs, key = read.metadata, read.fs, read.label
        else:
            samples, columns = read_table(path, self.layout.channels, self.max_elements)
            if source_fs is None:
                raise MatFileError("no sampling rate: a table stores none, so give source_fs or "
                                   "an fs column in the manifest")
            fs = self.rate or source_fs
            if samples.shape[1] * fs / source_fs > self.max_elements:
                raise MatFileError(f"resampling to {fs:g} Hz exceeds the limit of "
                                   f"{self.max_elements} elements")
            samples = resample(samples, source_fs, fs).astype(np.float32)
            metadata = {"format": path.suffix.lower().lstrip("."), "columns": columns,
                        "source_fs": source_fs}
            key = self.label
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
        return _Read(samples, fs, key, metadata, str(row.get("group") or rel))

    def _records(self, read: _Read, rel: str) -> Iterator[tuple[np.ndarray, float, dict[str, Any]]]:
        record_length, _, _ = self.layout.lengths(read.fs)
        size = read.samples.shape[1]
        if size < record_length:
            raise MatFileError(f"signal too short: {size} samples at {read.fs:g} Hz, a record "
                               f"needs {record_length}")
        n = size // record_length
        records = read.samples[:, : n * record_length].reshape(
            len(read.samples), n, record_length).transpose(1, 0, 2)
        try:
            records, stats = normalize_records(records, self.normalize)
        except InvalidInput as error:
            raise MatFileError(f"cannot normalise per {self.normalize}: {error}") from None
        if self.normalize == "file":
            self.file_stats[rel] = {k: v for k, v in stats[0].items() if k != "rule"}
        severity = read.metadata.get("severity")
        severity = float(severity) if isinstance(severity, (int, float)) else float("nan")
        for k in range(n):
            metadata = dict(read.metadata, fault=read.key, label=read.key, source_file=rel,
                            recording=read.group, segment=k, segments=n,
                            samples_dropped=int(size - n * record_length),
                            normalization=stats[k])
            signal = records[k, 0] if records.shape[1] == 1 else records[k]
            yield signal, severity, metadata


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
