"""MAT file formats: detect v4 / v5 (v6, v7) / v7.3, then list or load variables.

Listing reads headers only (``scipy.io.whosmat``; h5py shapes), so the caller can refuse an
oversized variable before any data is loaded. v7.3 files are HDF5 behind a 512-byte MATLAB
header; an HDF5 file without that header (written by h5py) is read the same way.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError, matfile_version

from pipeline.errors import MatFileError

__all__ = ["NUMERIC_CLASSES", "MatVar", "detect_format", "list_variables", "load_variables"]

NUMERIC_CLASSES = frozenset({"double", "single", "int8", "int16", "int32", "int64",
                             "uint8", "uint16", "uint32", "uint64"})
# What scipy raises on a damaged file varies with where the damage is.
_READ_ERRORS = (MatReadError, ValueError, TypeError, EOFError, OSError, KeyError,
                IndexError, zlib.error)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class MatVar:
    """A variable as declared in the file: name, MATLAB dimensions and kind."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "numeric" | "char" | "logical" | "struct" | "other"

    @property
    def size(self) -> int:
        """Number of elements the dimensions declare (a Python int: never overflows)."""
        return math.prod(self.shape)


def _kind(mclass: str | None) -> str:
    if mclass in NUMERIC_CLASSES:
        return "numeric"
    return mclass if mclass in ("char", "logical", "struct") else "other"


def detect_format(path: Path) -> str:
    """Return "v4", "v5" or "v7.3"; raises ``MatFileError`` for empty or non-MAT files."""
    size = path.stat().st_size
    if size == 0:
        raise MatFileError(f"empty file: {path}")
    with path.open("rb") as handle:
        head = handle.read(1024)
    if head.startswith(b"MATLAB 7.3 MAT-file") or _HDF5_SIGNATURE in (head[:8], head[512:520]):
        return "v7.3"
    if head.startswith(b"MATLAB 5.0 MAT-file"):  # v5, v6 and v7 all write this text
        if size < 128:
            raise MatFileError(f"MAT file is truncated (header of {size} bytes): {path}")
        return "v5"
    try:
        with path.open("rb") as handle:
            major, _ = matfile_version(handle)
    except _READ_ERRORS:
        raise MatFileError(f"not a MAT file (no MATLAB header): {path}") from None
    if major != 0:
        raise MatFileError(f"not a MAT file (version bytes without a MATLAB header): {path}")
    return "v4"  # v4 has no header: only a failed listing can tell it from noise


def list_variables(path: Path, fmt: str) -> dict[str, MatVar]:
    """Return every variable's declared dimensions and kind, reading headers only."""
    if fmt == "v7.3":
        with _open_h5(path) as handle:
            return {name: MatVar(name, (1, 1) if isinstance(obj, h5py.Group)
                                 else _h5_shape(obj), _h5_kind(obj))
                    for name, obj in handle.items()
                    if not name.startswith("#")}  # MATLAB's #refs# and #subsystem#
    try:
        with path.open("rb") as handle:
            listing = scipy.io.whosmat(handle)
    except _READ_ERRORS as error:
        if fmt == "v4":
            raise MatFileError(f"not a MAT file (not a valid v4 file either): {path}") from None
        raise MatFileError(f"MAT file is truncated or corrupt: {path} ({error})") from None
    return {name: MatVar(name, tuple(int(d) for d in shape), _kind(mclass))
            for name, shape, mclass in listing}


def load_variables(path: Path, fmt: str, names: list[str], field_limit: int) -> dict[str, Any]:
    """Load ``names``: arrays as numpy, char as str, structs as dicts.

    v7.3 struct fields over ``field_limit`` elements are skipped unread; scipy offers no
    lazy view inside a v5 struct, so there the struct is loaded whole.
    """
    if fmt != "v7.3":
        try:
            with path.open("rb") as handle:
                return scipy.io.loadmat(handle, variable_names=names, simplify_cells=True)
        except _READ_ERRORS as error:
            raise MatFileError(f"MAT file is truncated or corrupt: {path} ({error})") from None
    try:
        with _open_h5(path) as handle:
            return {name: _h5_value(handle[name], field_limit) for name in names}
    except (OSError, KeyError, ValueError) as error:
        raise MatFileError(f"MAT v7.3 file cannot be read: {path} ({error})") from None


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise MatFileError(f"MAT v7.3 file is truncated or corrupt: {path} ({error})") from None


def _h5_class(obj: h5py.HLObject) -> str | None:
    value = obj.attrs.get("MATLAB_class")
    return value.decode("ascii") if isinstance(value, bytes) else value


def _h5_kind(obj: h5py.HLObject) -> str:
    mclass = _h5_class(obj)
    if isinstance(obj, h5py.Group):
        return "struct" if mclass in (None, "struct") else "other"
    if mclass is not None:
        return _kind(mclass) if mclass != "struct" else "other"
    # An HDF5 file not written by MATLAB: judge by dtype.
    if obj.dtype.kind in "fiu":
        return "numeric"
    return "char" if obj.dtype.kind in "SOU" else "other"


def _h5_shape(obj: h5py.Dataset) -> tuple[int, ...]:
    if obj.attrs.get("MATLAB_empty"):
        return (0,)
    # MATLAB writes column-major arrays with their dimensions reversed.
    return tuple(reversed(obj.shape)) if _h5_class(obj) is not None else tuple(obj.shape)


def _h5_value(obj: h5py.HLObject, field_limit: int) -> Any:
    kind = _h5_kind(obj)
    if isinstance(obj, h5py.Group):
        return {name: _h5_value(child, field_limit) for name, child in obj.items()
                # a field too large for metadata is never read
                if not (isinstance(child, h5py.Dataset)
                        and math.prod(_h5_shape(child)) > field_limit)}
    if obj.attrs.get("MATLAB_empty"):
        return np.zeros(0)
    raw = obj[()]
    if kind == "char":
        if isinstance(raw, bytes):
            return raw.decode("utf-8")
        return raw if isinstance(raw, str) else "".join(map(chr, np.asarray(raw).ravel().tolist()))
    if kind not in ("numeric", "logical"):
        return None
    array = np.asarray(raw)
    if array.dtype.names:  # MATLAB complex: compound (real, imag)
        return None
    array = array.T if _h5_class(obj) is not None else array
    return array.astype(bool) if kind == "logical" else array
