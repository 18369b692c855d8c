"""Read one recording stored as a table of samples: CSV, Parquet (pandas + pyarrow) or NPY.

A table holds one recording: a row per sample, a column per channel (a ``.npy`` array is
``[samples]`` or ``[samples, channels]``, its channels named ``ch0``, ``ch1``...). Channels
are chosen by name or pattern; a table with one numeric column needs no choice. Memory stays
bounded by one file: Parquet and NPY declare their size before any sample is read, and a
file over the element budget is refused unread.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import MatFileError

__all__ = ["TABLE_SUFFIXES", "read_table"]

TABLE_SUFFIXES = (".csv", ".parquet", ".npy")


def read_table(path: Path, channels: Sequence[str] | None,
               max_elements: int) -> tuple[np.ndarray, list[str]]:
    """The chosen channels ``[C, n]`` (float64) of a table file, and their column names.

    Raises:
        MatFileError: unreadable, over ``max_elements``, a channel matching no column or
            several, non-numeric or non-finite samples, fewer than two samples.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            columns = _npy_columns(path, max_elements)
        elif suffix == ".parquet":
            columns = _parquet_columns(path, max_elements)
        elif suffix == ".csv":
            columns = _csv_columns(path)
        else:
            raise MatFileError(f"not a table file ({', '.join(TABLE_SUFFIXES)}): {path}")
    except (OSError, ValueError) as error:
        raise MatFileError(f"table cannot be read: {error}: {path}") from None
    names = _choose(list(columns), channels, path)
    samples = np.stack([_numeric(columns[name], name, path) for name in names])
    if samples.size > max_elements:
        raise MatFileError(f"{samples.size} samples, over the limit of {max_elements}: {path}")
    if samples.shape[1] < 2:
        raise MatFileError(f"the table holds no signal ({samples.shape[1]} rows): {path}")
    return samples, names


def _npy_columns(path: Path, max_elements: int) -> dict[str, Any]:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.size > max_elements:
        raise MatFileError(f"array of {array.size} elements, over the limit of {max_elements}: {path}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise MatFileError(f"array has {array.ndim} dimensions; expected [samples] or "
                           f"[samples, channels]: {path}")
    return {f"ch{k}": array[:, k] for k in range(array.shape[1])}


def _parquet_columns(path: Path, max_elements: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    declared = pq.ParquetFile(path).metadata
    if declared.num_rows * declared.num_columns > max_elements:
        raise MatFileError(f"table of {declared.num_rows} rows x {declared.num_columns} columns, "
                           f"over the limit of {max_elements} elements: {path}")
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _csv_columns(path: Path) -> dict[str, Any]:
    import pandas as pd

    frame = pd.read_csv(path)
    return {str(name): frame[name].to_numpy() for name in frame.columns}


def _choose(available: list[str], channels: Sequence[str] | None, path: Path) -> list[str]:
    if channels is None:
        if len(available) != 1:
            raise MatFileError(f"the table has {len(available)} columns ({', '.join(available)}): "
                               f"choose the channels to import: {path}")
        return available
    chosen = []
    for pattern in channels:
        found = [name for name in available if fnmatchcase(name, pattern)]
        if len(found) != 1:
            what = "no column" if not found else f"{len(found)} columns ({', '.join(found)})"
            raise MatFileError(f"channel {pattern!r} matches {what}; the table has "
                               f"{', '.join(available)}: {path}")
        chosen.append(found[0])
    return chosen


def _numeric(values: Any, name: str, path: Path) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise MatFileError(f"column {name!r} is not numeric ({array.dtype}): {path}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise MatFileError(f"column {name!r} holds NaN or infinite values: {path}")
    return array
