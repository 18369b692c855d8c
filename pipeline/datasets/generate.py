"""Generate a whole dataset: records across every core, one HDF5 file (and MAT files).

Worker processes generate records, compress each into its HDF5 chunk and write its MAT file
when asked; the parent only places finished chunks in the file, reports progress once per
record and checks ``should_stop()`` between records. The split is decided before generation
(labels follow from the config alone), so each worker knows where its records go.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.hdf5 import (
    DatasetWriter,
    EncodedSignal,
    check_dataset_id,
    dataset_attrs,
    encode_signal,
    split_indices,
)
from pipeline.datasets.matio import export_mat, mat_file_name, publish_dir
from pipeline.domain import class_index
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.signals.config import GENERATOR_VERSION, GeneratorConfig
from pipeline.signals.generator import generate_record
from pipeline.signals.parallel import ordered_map

__all__ = ["FORMATS", "GeneratedDataset", "generate_dataset"]

FORMATS = ("hdf5", "mat")


@dataclass
class GeneratedDataset:
    """What ``generate_dataset`` produced (paths are None for formats not asked for)."""

    hdf5_path: str | None
    mat_dir: str | None
    class_counts: dict[str, int]
    split_counts: dict[str, int]
    n_records: int
    config_hash: str
    duration_s: float


@dataclass(frozen=True)
class _Produced:
    split: str
    position: int
    label: int
    severity: float
    metadata: dict[str, Any]
    encoded: EncodedSignal | None
    signal: np.ndarray | None = None  # raw storage only: a compressed record travels encoded


def _produce(
    config: GeneratorConfig, mat_dir: str | None, store: str | None,
    items: Sequence[tuple[int, str, int]],
) -> list[_Produced]:
    # Runs in a worker: everything per record that costs CPU or disk happens here. ``store``:
    # "gzip" (the chunk is compressed here), "none" (the raw signal goes back), None (no HDF5).
    produced = []
    for index, split, position in items:
        record = generate_record(config, index)
        if mat_dir is not None:
            export_mat(record, Path(mat_dir) / mat_file_name(split, position, record.fault))
        produced.append(_Produced(
            split, position, record.label, record.severity, record.metadata,
            encode_signal(record.signal) if store == "gzip" else None,
            record.signal if store == "none" else None,
        ))
    return produced


def _placement(config: GeneratorConfig) -> tuple[list[tuple[int, str, int]], dict[str, int]]:
    labels = [class_index(config.fault_of(i)) for i in range(config.n_records)]
    splits = split_indices(labels, config.split_ratios, config.seed)
    where: dict[int, tuple[str, int]] = {}
    for split, members in splits.items():
        for position, index in enumerate(members.tolist()):
            where[index] = (split, position)
    items = [(i, *where[i]) for i in range(config.n_records)]
    return items, {split: len(members) for split, members in splits.items()}


def generate_dataset(
    config: GeneratorConfig,
    output_dir: str | Path,
    dataset_id: str,
    formats: Sequence[str] = ("hdf5",),
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    workers: int | None = None,
    overwrite: bool = False,
    compression: str = "gzip",
) -> GeneratedDataset:
    """Generate ``config``'s records into ``{output_dir}/{dataset_id}.h5`` (and ``_mat/``).

    Files appear under their final names only when complete. ``workers`` defaults to
    every core. ``compression`` ``"gzip"`` stores each record's chunk at 42 % of its size;
    ``"none"`` stores it raw, 2.4x the disk for a loader about 6x faster (bench_loader:
    13,473 against 2,217 windows/s here), for training at scale on a fast device.

    Raises:
        InvalidInput: a bad config, dataset id or format.
        DatasetFileError: the dataset file exists and ``overwrite`` is false.
        StopRequested: ``should_stop()`` answered true (nothing is left behind).
    """
    started = time.perf_counter()
    config.validate()
    check_dataset_id(dataset_id)
    if compression not in ("gzip", "none"):
        raise InvalidInput(f"compression must be 'gzip' or 'none', got {compression!r}")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise InvalidInput(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    hdf5_path = output / f"{dataset_id}.h5" if "hdf5" in formats else None
    mat_final = output / f"{dataset_id}_mat" if "mat" in formats else None
    if not overwrite:
        for existing in (hdf5_path, mat_final):
            if existing is not None and existing.exists():
                raise DatasetFileError(f"dataset output already exists: {existing}")

    items, split_counts = _placement(config)
    mat_partial = Path(f"{mat_final}.partial") if mat_final else None
    if mat_partial is not None:
        shutil.rmtree(mat_partial, ignore_errors=True)
        mat_partial.mkdir(parents=True)
    attrs = dataset_attrs(
        source="generator", split_ratios=config.split_ratios, seed=config.seed,
        generator_config=config.to_dict(), generator_config_hash=config.config_hash(),
        generator_version=GENERATOR_VERSION,
    )
    writer = (DatasetWriter(hdf5_path, attrs, split_counts, overwrite=overwrite, compress=compression == "gzip")
              if hdf5_path else None)
    work = partial(_produce, config, str(mat_partial) if mat_partial else None,
                   compression if hdf5_path is not None else None)
    total = len(items)
    try:
        with writer or nullcontext(), closing(ordered_map(work, items, workers)) as produced:
            for done, item in enumerate(produced, start=1):
                check_stop(should_stop)
                if writer is not None:
                    writer.write(item.split, item.position, item, encoded=item.encoded)
                on_progress(done / total, "generating", records_done=done,
                            records_total=total)
        if mat_partial is not None and mat_final is not None:
            publish_dir(mat_partial, mat_final)
    except BaseException:
        if mat_partial is not None:
            shutil.rmtree(mat_partial, ignore_errors=True)
        raise
    return GeneratedDataset(
        hdf5_path=str(hdf5_path) if hdf5_path else None,
        mat_dir=str(mat_final) if mat_final else None,
        class_counts={key: config.records_per_class for key in config.fault_types},
        split_counts=split_counts,
        n_records=total,
        config_hash=config.config_hash(),
        duration_s=time.perf_counter() - started,
    )
