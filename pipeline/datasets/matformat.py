"""MAT file formats: detect v4 / v5 (v6, v7) / v7.3, then list or load variables.

Listing reads headers only, so the caller can refuse an oversized variable before any data
is loaded. v4 and v5 files are read by ``scipy.io.loadmat`` once their structure has been
checked: v5 by walking every element scipy will read (``matv5``), v4 by checking that each
variable, flat by design, lies whole inside the file. v7.3 files are HDF5 (``math5``).
"""

from __future__ import annotations

import struct
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError, matfile_version

from pipeline.datasets.math5 import list_h5, load_h5
from pipeline.datasets.matv5 import check_v5_variable, read_numeric, scan_v5
from pipeline.datasets.matvars import NUMERIC_CLASSES, OBJECT_BYTES, Budget, MatVar, kind_of
from pipeline.datasets.scratch import Scratch
from pipeline.errors import MatFileError

__all__ = ["NUMERIC_CLASSES", "MatVar", "detect_format", "list_variables", "load_variables"]

# What scipy raises on a damaged file varies with where the damage is (OverflowError: a
# negative sparse index, which only the values themselves show).
_READ_ERRORS = (MatReadError, ValueError, TypeError, EOFError, OSError, KeyError,
                IndexError, OverflowError, zlib.error)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_V4_TYPES = {0: ("double", 8), 1: ("single", 4), 2: ("int32", 4), 3: ("int16", 2),
             4: ("uint16", 2), 5: ("uint8", 1)}
_V4_NAME_MAX = 4096


def detect_format(path: Path) -> str:
    """Return "v4", "v5" or "v7.3"; raises ``MatFileError`` for empty or non-MAT files."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as error:
        raise MatFileError(f"MAT file cannot be read: {path} ({error})") from None
    if size == 0:
        raise MatFileError(f"empty file: {path}")
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
    """Return every variable's declared dimensions and kind, reading headers only.

    Raises:
        MatFileError: damaged or cut short anywhere, even in a variable not to be read;
            a v7.3 file with links, virtual datasets or external storage.
    """
    if fmt == "v7.3":
        return list_h5(path)
    if fmt == "v4":
        return _scan_v4(path)
    found: dict[str, MatVar] = {}
    for var in scan_v5(path)[1]:
        if var.name in found:
            raise MatFileError(f"variable {var.name!r} appears twice in the file: {path}")
        kind = "logical" if var.mclass == "logical" else kind_of(var.mclass)
        found[var.name] = MatVar(var.name, var.shape, kind, var.mclass, element=var)
    return found


def load_variables(path: Path, fmt: str, variables: dict[str, MatVar], signals: list[str],
                   others: list[str], *, max_elements: int, metadata_bytes: int,
                   field_limit: int, scratch: Scratch | None = None) -> dict[str, Any]:
    """Load ``signals`` and ``others`` (names among ``variables``, as ``list_variables``
    gave them): arrays as numpy (logical as bool), char as str, structs as dicts.

    A v5 signal stored uncompressed and real is read straight into an array (in ``scratch``'s
    buffers when given); scipy would read it into a buffer, then copy it out.

    Each signal may take ``max_elements`` of 8 bytes; ``others`` together ``metadata_bytes``,
    checked against what the file declares before anything is read. v7.3 struct fields
    over ``field_limit`` elements are skipped unread; scipy offers no lazy view inside a
    v5 struct, so there the whole struct is checked against the budget.

    Raises:
        MatFileError: damaged, or a variable over its budget.
    """
    signal_bytes = max_elements * 8 + OBJECT_BYTES
    budget = Budget(metadata_bytes, "metadata and scalars")
    if fmt == "v7.3":
        return load_h5(path, signals, others, signal_bytes, budget, field_limit)
    names = [*signals, *others]
    if fmt == "v4":
        return _loadmat(path, names, {}, exact=False) if names else {}
    direct: dict[str, Any] = {}
    for k, signal in enumerate(signals):
        var = variables[signal].element
        walked = check_v5_variable(path, var, Budget(signal_bytes, "the signal"))
        values = None if walked.numeric_at is None else read_numeric(
            path, var, walked.numeric_at,
            partial(scratch.array, f"signal {k}") if scratch else np.empty)
        if values is not None:
            direct[signal] = values
    # In MATLAB's own class (mat_dtype) logical values come back as bool, not 0/1; but a
    # complex value would lose its imaginary part, so what holds one is read as stored.
    complex_ = [name for name in others
                if check_v5_variable(path, variables[name].element, budget).complex]
    exact = [name for name in others if name not in complex_]
    classes = {name: variables[name].mclass for name in names}
    as_stored = [*(name for name in signals if name not in direct), *complex_]
    loaded = _loadmat(path, as_stored, classes, exact=False) if as_stored else {}
    return {**direct, **loaded, **(_loadmat(path, exact, classes, exact=True) if exact else {})}


def _loadmat(path: Path, names: list[str], classes: dict[str, str], exact: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            loaded = scipy.io.loadmat(handle, variable_names=names, simplify_cells=True,
                                      mat_dtype=exact)
    except _READ_ERRORS as error:
        raise MatFileError(f"MAT file is truncated or corrupt: {path} ({error})") from None
    for name in names:
        value = loaded.get(name)
        # scipy puts its error text in place of a variable it could not read.
        if value is None or (isinstance(value, str) and classes.get(name, "char") != "char"):
            raise MatFileError(f"variable {name!r} cannot be read ({value!r}): {path}")
    return {name: loaded[name] for name in names}


def _scan_v4(path: Path) -> dict[str, MatVar]:
    """List a v4 file's variables, each of which must lie whole inside the file."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            # scipy's guess: a plausible type word read little-endian means little-endian.
            order = "<" if 0 <= int.from_bytes(handle.read(4), "little", signed=True) <= 5000 else ">"
            found: dict[str, MatVar] = {}
            pos = 0
            while pos < size:
                var, pos = _v4_variable(handle, pos, size, order, path)
                if var.name in found:
                    raise MatFileError(f"variable {var.name!r} appears twice in the file: {path}")
                found[var.name] = var
    except OSError as error:
        raise MatFileError(f"MAT file cannot be read: {path} ({error})") from None
    return found


def _v4_variable(handle: Any, pos: int, size: int, order: str, path: Path) -> tuple[MatVar, int]:
    handle.seek(pos)
    head = handle.read(20)
    if len(head) < 20:
        raise MatFileError(f"not a MAT file, or a v4 file cut short at byte {pos}: {path}")
    mopt, rows, cols, imag, namelen = struct.unpack(order + "5i", head)
    m, o, p, t = mopt // 1000, mopt // 100 % 10, mopt // 10 % 10, mopt % 10
    if (not 0 <= mopt <= 5000 or m != (order == ">") or o or p not in _V4_TYPES or t > 2
            or rows < 0 or cols < 0 or not 0 < namelen <= _V4_NAME_MAX):
        raise MatFileError(f"not a MAT file (not a valid v4 file either): {path}")
    mclass, itemsize = _V4_TYPES[p]
    nbytes = rows * cols * itemsize * (2 if imag == 1 and t != 2 else 1)
    end = pos + 20 + namelen + nbytes
    if end > size:
        raise MatFileError(f"MAT file is truncated: a v4 variable at byte {pos} declares "
                           f"{nbytes} bytes, but the file ends {end - size} bytes short: {path}")
    name = handle.read(namelen).strip(b"\x00").decode("latin-1")
    mclass = {1: "char", 2: "sparse"}.get(t, mclass)
    return MatVar(name, (rows, cols), kind_of(mclass), mclass), end
