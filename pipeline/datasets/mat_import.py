"""Import MAT files into a dataset: one like any other (same HDF5 layout, ``source="mat_import"``).

A file that cannot be used is listed in ``failures`` with its reason and the others go on;
so is a link found inside a folder that leads out of the import root or nowhere. Signals
are cut into consecutive 102,400-sample records (a tail shorter than a record is dropped
and counted in the metadata); a signal shorter than one record is refused rather than
zero-padded, because padding would teach a model that silence marks a class. Every path is
resolved (symlinks included) and must stay under the import root.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.hdf5 import DatasetWriter, check_dataset_id, dataset_attrs, split_indices
from pipeline.datasets.matlabel import check_label
from pipeline.datasets.matread import MAX_ELEMENTS, MatSignal, read_mat
from pipeline.domain import CLASS_KEYS, FS, RECORD_LENGTH, class_index
from pipeline.errors import DatasetFileError, InvalidInput, MatFileError, UnsafePath
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.signals.config import check_split_ratios
from pipeline.signals.generator import Record
from pipeline.signals.normalize import check_rule, zscore

__all__ = ["IMPORTER_VERSION", "ImportedDataset", "import_mat_files", "resolve_under_root"]

# 1.1: labels by precedence, files checked first; 1.2: optional z-score per file or record
IMPORTER_VERSION = "pfd-mat-import/1.2"
_MAT_SUFFIX = ".mat"
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


def _expand(paths: Sequence[str | os.PathLike[str]],
            root: Path) -> tuple[list[Path], list[dict[str, str]]]:
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
        for found in sorted(p for p in resolved.rglob("*") if p.suffix.lower() == _MAT_SUFFIX):
            rel = str(found.relative_to(root))
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


def _normalized(read: MatSignal, rule: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The file's kept samples ``[n, RECORD_LENGTH]`` under ``rule``, and each record's statistics.

    Only the samples that become records count: a per-file z-score over them leaves the
    file's records at mean 0 and std 1 exactly, whatever tail was dropped.

    Raises:
        MatFileError: the file (``"file"``) or one of its records (``"record"``) is constant.
    """
    n = read.signal.size // RECORD_LENGTH
    records = read.signal[:n * RECORD_LENGTH].reshape(n, RECORD_LENGTH)
    if rule == "none":
        return records, [{"rule": "none"}] * n
    try:
        if rule == "file":
            scaled, mean, std = zscore(records, "the signal")
            return scaled, [{"rule": "file", "mean": mean, "std": std}] * n
        out = [zscore(r, f"record {k} (samples {k * RECORD_LENGTH}-{(k + 1) * RECORD_LENGTH - 1})")
               for k, r in enumerate(records)]
    except InvalidInput as error:
        raise MatFileError(f"cannot normalise per {rule}: {error}") from None
    return (np.stack([o[0] for o in out]),
            [{"rule": "record", "mean": o[1], "std": o[2]} for o in out])


def _segments(read: MatSignal, rel: str, normalize: str) -> Iterator[Record]:
    records, stats = _normalized(read, normalize)
    n = len(records)
    label = class_index(read.label or "")
    severity = read.metadata.get("severity")
    severity = float(severity) if isinstance(severity, (int, float)) else float("nan")
    for k in range(n):
        metadata = dict(read.metadata, fault=read.label, label=label, source_file=rel,
                        segment=k, segments=n,
                        samples_dropped=int(read.signal.size - n * RECORD_LENGTH),
                        normalization=stats[k])
        yield Record(records[k], label, read.label or "", severity, metadata)


def import_mat_files(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str], dataset_id: str,
    on_progress: ProgressFn = no_progress, should_stop: StopFn = never_stop,
    split_ratios: Sequence[float] = (0.70, 0.15, 0.15), seed: int = 0,
    max_elements: int = MAX_ELEMENTS, overwrite: bool = False, label: str | None = None,
    normalize: str = "none",
) -> ImportedDataset:
    """Import MAT files (directories are searched for ``*.mat``) into ``{dataset_id}.h5``.

    ``label``, a class key, is every file's label; a file whose own label variable, folder
    or name says otherwise is refused (``read_mat``). ``normalize`` (``"none"``, ``"file"``,
    ``"record"``) z-scores each file or each record as it is written; the rule and each file's
    mean and std go into the dataset's config, each record's into its metadata, and a file
    that is constant (or holds a constant record, per record) is refused alone. Progress: 0-90 % once per file read,
    the rest while writing the split file. An existing ``{dataset_id}.h5`` is refused unless
    ``overwrite`` (a retry of a crashed import).

    Raises:
        InvalidInput: no paths, a bad root, ratios, label or normalisation rule.
        UnsafePath: a path given lies outside ``root``.
        MatFileError: not one file could be read; the message names the first
            ``_MAX_REASONS_IN_ERROR`` reasons and its ``failures`` attribute holds them all.
        StopRequested: ``should_stop()`` answered true.
    """
    started = time.perf_counter()
    check_dataset_id(dataset_id)
    ratios = check_split_ratios(tuple(split_ratios))
    if not paths:
        raise InvalidInput("no MAT files or folders given")
    check_label(label)
    check_rule(normalize)
    base = Path(root).resolve()
    if not base.is_dir():
        raise InvalidInput(f"import root is not a directory: {root}")
    files, refused = _expand(paths, base)
    if not files and not refused:
        raise MatFileError(f"no {_MAT_SUFFIX} files found in {[str(p) for p in paths]}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    hdf5_path = output / f"{dataset_id}.h5"
    if hdf5_path.exists() and not overwrite:  # refuse before reading every file
        raise DatasetFileError(f"dataset file already exists: {hdf5_path}")
    staging = output / f"{dataset_id}.staging.h5"
    file_stats: dict[str, dict[str, float]] = {}
    try:
        labels, rows, failures = _stage(files, base, staging, max_elements, label, normalize,
                                        file_stats, on_progress, should_stop)
        failures = refused + failures
        if not labels:
            raise _nothing_imported(failures)
        config = {"source": "mat_import", "files": [str(p.relative_to(base)) for p in files],
                  "split_ratios": list(ratios), "seed": int(seed),
                  "max_elements": int(max_elements), "label": label,
                  "normalization": _normalization_config(normalize, file_stats)}
        config_hash = hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        attrs = dataset_attrs(source="mat_import", split_ratios=ratios, seed=seed,
                              generator_config=config, generator_config_hash=config_hash,
                              generator_version=IMPORTER_VERSION)
        splits = split_indices(labels, ratios, seed)
        total = len(labels)
        sizes = {s: len(v) for s, v in splits.items()}
        with h5py.File(staging, "r") as stage, DatasetWriter(
                hdf5_path, attrs, sizes, overwrite=overwrite) as writer:
            done = 0
            for split, members in splits.items():
                for position, row in enumerate(members.tolist()):
                    check_stop(should_stop)
                    severity, metadata = rows[row]
                    writer.write(split, position, Record(
                        stage["signals"][row], labels[row], CLASS_KEYS[labels[row]],
                        severity, metadata))
                    done += 1
                    on_progress(0.9 + 0.1 * done / total, "writing dataset",
                                records_done=done, records_total=total)
    finally:
        with suppress(FileNotFoundError):
            staging.unlink()
    counts = np.bincount(np.asarray(labels), minlength=len(CLASS_KEYS))
    return ImportedDataset(
        hdf5_path=str(hdf5_path), n_files=len(files) + len(refused), n_records=total,
        class_counts={key: int(counts[k]) for k, key in enumerate(CLASS_KEYS) if counts[k]},
        split_counts={s: len(v) for s, v in splits.items()}, failures=failures,
        config_hash=config_hash, duration_s=time.perf_counter() - started,
    )


def _normalization_config(rule: str, file_stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What a reader needs to treat new data like this dataset's (the dataset config's part)."""
    if rule == "none":
        return {"rule": "none"}
    if rule == "record":
        return {"rule": "record", "applies_to_new_data": "z-score each 5 s record by its own "
                "mean and std (each record's are in its metadata)"}
    return {"rule": "file", "files": file_stats,
            "applies_to_new_data": "only to data imported with normalize='file': the statistics "
            "belong to a whole source file, which a record from elsewhere does not carry"}


def _nothing_imported(failures: list[dict[str, str]]) -> MatFileError:
    reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in failures[:_MAX_REASONS_IN_ERROR])
    more = len(failures) - _MAX_REASONS_IN_ERROR
    error = MatFileError(f"no MAT file could be imported ({len(failures)} failed): {reasons}"
                         + (f"; and {more} more" if more > 0 else ""))
    # A job's error message stays short; the caller keeps every reason in its own record.
    error.failures = failures  # type: ignore[attr-defined]
    return error


def _stage(
    files: list[Path], base: Path, staging: Path, max_elements: int, label: str | None,
    normalize: str, file_stats: dict[str, dict[str, float]],
    on_progress: ProgressFn, should_stop: StopFn,
) -> tuple[list[int], list[tuple[float, dict[str, Any]]], list[dict[str, str]]]:
    """Read every file once, appending its (normalised) records to an uncompressed staging file.

    ``file_stats`` receives each imported file's mean and std under the ``"file"`` rule.

    The split needs every label before the dataset file can be sized, and holding all
    signals in memory would not be bounded; the staging file is.
    """
    labels: list[int] = []
    rows: list[tuple[float, dict[str, Any]]] = []
    failures: list[dict[str, str]] = []
    with h5py.File(staging, "w") as stage:
        signals = stage.create_dataset("signals", shape=(0, RECORD_LENGTH),
                                       maxshape=(None, RECORD_LENGTH), dtype=np.float32,
                                       chunks=(1, RECORD_LENGTH))
        for k, path in enumerate(files):
            check_stop(should_stop)
            rel = str(path.relative_to(base))
            try:
                read = read_mat(path, root=base, max_elements=max_elements, label=label)
                if read.label is None:
                    raise MatFileError("no label found: no label variable and no class key "
                                       "in the file or folder names")
                if read.signal.size < RECORD_LENGTH:
                    raise MatFileError(
                        f"signal too short: {read.signal.size} samples at {FS} Hz, "
                        f"a record needs {RECORD_LENGTH}")
                records = list(_segments(read, rel, normalize))
            except MatFileError as error:
                failures.append({"path": rel, "reason": str(error)})
            except MemoryError:
                # Budgets keep a file's reading bounded; should one still not fit, it is
                # this file's failure, and its memory is free again for the next.
                failures.append({"path": rel, "reason": "ran out of memory reading it"})
            else:
                if normalize == "file":
                    stats = records[0].metadata["normalization"]
                    file_stats[rel] = {"mean": stats["mean"], "std": stats["std"]}
                for record in records:
                    signals.resize(len(labels) + 1, axis=0)
                    signals[len(labels)] = record.signal
                    labels.append(record.label)
                    rows.append((record.severity, record.metadata))
            on_progress(0.9 * (k + 1) / len(files), "reading MAT files", files_done=k + 1,
                        files_total=len(files), failures=len(failures))
    return labels, rows, failures
