"""MAT export and import: the generator's own ``.mat`` files, and MAT files into a dataset.

Export lives here; reading is ``matread`` (one file) and importing ``importer`` (many files
into a dataset); both are re-exported so ``pipeline.datasets.matio`` is the one module to use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from pipeline.datasets.hdf5 import SPLITS, check_dataset_id, read_split, validate_dataset_file
from pipeline.datasets.importer import (
    IMPORTER_VERSION,
    ImportedDataset,
    import_mat_files,
    resolve_under_root,
)
from pipeline.datasets.matread import MAX_ELEMENTS, MatSignal, read_mat
from pipeline.domain import CLASS_KEYS, FS
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.signals.generator import Record

__all__ = [
    "IMPORTER_VERSION",
    "MAX_ELEMENTS",
    "ImportedDataset",
    "MatSignal",
    "check_dataset_id",
    "export_dataset_mat",
    "export_mat",
    "import_mat_files",
    "mat_file_name",
    "publish_dir",
    "read_mat",
    "resolve_under_root",
]

_MAT_SUFFIX = ".mat"


def mat_file_name(split: str, position: int, fault: str) -> str:
    """Name of one exported record: ``{split}_{position:06d}_{fault}.mat``."""
    return f"{split}_{position:06d}_{fault}{_MAT_SUFFIX}"


def _mat_safe(value: Any) -> Any:
    # savemat cannot store None; an absent field reads back as "no value" just the same.
    if isinstance(value, dict):
        return {k: _mat_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray([v for v in value if v is not None])
    return value


def export_mat(record: Record, path: str | os.PathLike[str]) -> Path:
    """Write one record as a MAT v5 file with ``x`` (column), ``fs``, ``fault``, ``metadata``."""
    path = Path(path)
    scipy.io.savemat(
        path,
        {
            "x": np.asarray(record.signal, dtype=np.float32).reshape(-1, 1),
            "fs": float(FS),
            "fault": record.fault,
            "metadata": _mat_safe(record.metadata),
        },
        do_compression=True,
        oned_as="column",
    )
    return path


def export_dataset_mat(
    hdf5_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], dataset_id: str,
    on_progress: ProgressFn = no_progress, should_stop: StopFn = never_stop,
) -> Path:
    """Export every record of a dataset file to ``{output_dir}/{dataset_id}_mat/``.

    The folder is filled under a ``.partial`` name and renamed when complete.
    """
    check_dataset_id(dataset_id)
    info = validate_dataset_file(hdf5_path)
    final = Path(output_dir) / f"{dataset_id}_mat"
    partial = Path(f"{final}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    total, done = info["n_records"], 0
    try:
        for split in SPLITS:
            for position in range(info["split_counts"][split]):
                check_stop(should_stop)
                arrays = read_split(hdf5_path, split, slice(position, position + 1))
                fault = CLASS_KEYS[int(arrays.labels[0])]
                record = Record(arrays.signals[0], int(arrays.labels[0]), fault,
                                float(arrays.severities[0]), arrays.metadata[0])
                export_mat(record, partial / mat_file_name(split, position, fault))
                done += 1
                on_progress(done / total, "exporting MAT", records_done=done,
                            records_total=total)
        publish_dir(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def publish_dir(partial: Path, final: Path) -> None:
    """Replace ``final`` by the completed ``partial`` folder."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
