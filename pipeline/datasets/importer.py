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

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.datasets.hdf5 import DatasetWriter, check_dataset_id, dataset_attrs, split_indices
from pipeline.datasets.labels import LabelRule
from pipeline.datasets.matlabel import check_label
from pipeline.datasets.matread import MAX_ELEMENTS
from pipeline.datasets.recording_reader import (
    MAT_SUFFIXES,
    RecordingLayout,
    RecordingReader,
    prefetch,
)
from pipeline.datasets.tables import TABLE_SUFFIXES
from pipeline.domain import CLASS_KEYS, DISPLAY_NAMES
from pipeline.errors import DatasetFileError, InvalidInput, MatFileError, UnsafePath
from pipeline.progress import ProgressFn, StopFn, check_stop, never_back, never_stop, no_progress
from pipeline.signals.config import check_split_ratios
from pipeline.signals.generator import Record
from pipeline.signals.normalize import check_rule

__all__ = ["IMPORTER_VERSION", "MAT_SUFFIXES", "RECORDING_SUFFIXES", "ImportedDataset",
           "RecordingLayout", "import_mat_files", "import_recordings", "resolve_under_root"]

# 1.1: labels by precedence, files checked first; 1.2: optional z-score per file or record;
# 1.3: label rules, channels, native rates, record/window lengths, splits by recording
IMPORTER_VERSION = "pfd-import/1.3"
RECORDING_SUFFIXES = MAT_SUFFIXES + TABLE_SUFFIXES
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
    # A planned import that falls back starts over the staged way: the bar holds, not goes back.
    request = _Request(base, layout, labels, label, max_elements, normalize, ratios, seed,
                       suffixes, files, refused, hdf5_path, overwrite, never_back(on_progress), should_stop)
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

    def reader(self) -> RecordingReader:
        """A reader in its initial state (no rate taken from a file yet, no statistics)."""
        return RecordingReader(self.base, self.layout, self.labels, self.label, self.max_elements,
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
    def of(cls, request: _Request, reader: RecordingReader, keys: list[str], groups: list[str],
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

    def attrs(self, request: _Request, reader: RecordingReader) -> tuple[dict[str, Any], str]:
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
                    prefetch(planned[k + 1].plan.path)
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


def import_mat_files(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str], dataset_id: str, **options: Any,
) -> ImportedDataset:
    """``import_recordings`` of MAT files only (folders are searched for ``*.mat``)."""
    return import_recordings(paths, root, output_dir, dataset_id, suffixes=MAT_SUFFIXES, **options)
