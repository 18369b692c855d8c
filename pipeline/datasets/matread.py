"""Read one MATLAB file into a signal, a label and metadata (DOMAIN.md "MAT import").

v4 to v7.2 go through ``scipy.io.loadmat``, v7.3 through h5py (``matformat``). Memory stays
bounded: every variable is first listed with its declared dimensions (headers only), a
signal declaring more than ``max_elements`` elements is refused before anything is loaded,
only the variables the import needs are loaded at all, and what they will take once
loaded (the metadata struct and scalars together: ``METADATA_MAX_BYTES``) is checked
against what the file declares first. Variables named ``__...`` are MATLAB's own (the
``__function_workspace__`` of function handles) and never read. Labels: ``matlabel``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from pipeline.datasets.matformat import MatVar, detect_format, list_variables, load_variables
from pipeline.datasets.matlabel import (
    check_label,
    name_sources,
    resolve_label,
    variable_sources,
)
from pipeline.datasets.matvars import describe
from pipeline.domain import FS
from pipeline.errors import MatFileError

__all__ = ["FS_RANGE", "MAX_ELEMENTS", "METADATA_MAX_BYTES", "MatSignal", "json_safe",
           "read_mat"]

MAX_ELEMENTS = 50_000_000  # ~400 MB as float64: far above any real record, far below RAM
METADATA_MAX_BYTES = 16 << 20  # metadata struct and scalars of one file, once loaded
# Resampling by over 1000x either way is refused: no vibration record needs it, and the
# polyphase filter grows with the factor (a factor of 10^6 would take gigabytes).
FS_RANGE = (FS / 1000, FS * 1000)
SIGNAL_NAMES = ("signal", "x", "data", "y")
FS_NAMES = ("fs", "sampling_rate", "sample_rate")
METADATA_NAMES = ("metadata", "info", "params")
_METADATA_MAX_ELEMENTS = 64  # larger arrays are data, not metadata
_STRING_MAX_CHARS = 4096


@dataclass
class MatSignal:
    """A signal read from a MAT file, resampled to ``FS``; ``label`` is a class key or None."""

    signal: np.ndarray  # float32, 1-D
    fs: float
    label: str | None
    metadata: dict[str, Any]
    format: str  # "v4" | "v5" | "v7.3"
    source_fs: float | None = None  # as stored in the file; None when it had no fs
    variable: str = ""  # the variable the signal came from


def json_safe(value: Any, depth: int = 0) -> Any:
    """Convert a loaded MATLAB value to JSON-safe data; large arrays and oddities become None."""
    if depth > 4:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value[:_STRING_MAX_CHARS] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("latin-1")[:_STRING_MAX_CHARS]
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.size > _METADATA_MAX_ELEMENTS or np.iscomplexobj(value):
            return None
        if value.size == 1 and value.dtype != object:
            return json_safe(value.reshape(-1)[0], depth)
        return [json_safe(v, depth + 1) for v in value.reshape(-1).tolist()]
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value[:_METADATA_MAX_ELEMENTS]]
    return None


def _find(names: tuple[str, ...], variables: dict[str, MatVar], kinds: set[str]) -> str | None:
    # Exact names first, in priority order, then the same names in any case.
    for name in names:
        if name in variables and variables[name].kind in kinds:
            return name
    lowered = {v.lower(): v for v in variables}
    for name in names:
        match = lowered.get(name)
        if match is not None and variables[match].kind in kinds:
            return match
    return None


def _as_signal(value: Any, name: str, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    array = np.asarray(value)
    if np.iscomplexobj(array) or array.dtype.kind not in "fiu":
        raise MatFileError(f"variable {name!r} is not a real numeric array: {path}")
    array = np.squeeze(array)
    extra: dict[str, Any] = {}
    if array.ndim > 2:
        raise MatFileError(f"variable {name!r} has {array.ndim} dimensions; expected 1 or 2")
    if array.ndim == 2:
        # Samples run along the longer axis; keep the first channel.
        if array.shape[0] < array.shape[1]:
            array = array.T
        extra = {"channels": int(array.shape[1]), "channel_used": 0}
        array = array[:, 0]
    signal = array.astype(np.float64)
    if signal.size < 2:
        raise MatFileError(f"variable {name!r} holds no signal (size {signal.size}): {path}")
    if not np.all(np.isfinite(signal)):
        raise MatFileError(f"signal {name!r} holds NaN or infinite values: {path}")
    return signal, extra


def _resample(signal: np.ndarray, fs: float) -> np.ndarray:
    if fs == FS:
        return signal
    ratio = Fraction(FS) / Fraction(fs).limit_denominator(1000)
    ratio = ratio.limit_denominator(10_000)
    return scipy.signal.resample_poly(signal, ratio.numerator, ratio.denominator)


def read_mat(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
    max_elements: int = MAX_ELEMENTS, label: str | None = None,
) -> MatSignal:
    """Read a MAT file's signal (resampled to 20,480 Hz), label and metadata.

    Signal: first of ``signal``, ``x``, ``data``, ``y`` (one of them empty is refused),
    else the largest numeric array. Label, in this order (``matlabel``): ``label`` given
    here, ``label``/``fault_type``/``class``/``fault`` (top level, then in the metadata
    struct), a class key among the folder names below ``root``, then in the file name;
    None if none, a failure if two sources differ. Without ``fs`` the signal is taken to be
    at 20,480 Hz (``metadata["fs_assumed"]``).

    Raises:
        InvalidInput: ``label`` is not a class key.
        MatFileError: empty, not a MAT file, truncated or damaged, a link or external data
            (v7.3), a variable over its budget, no usable numeric array, a bad or
            disputed label, a bad fs, non-finite samples.
    """
    path = Path(path)
    check_label(label)
    if not path.is_file():
        raise MatFileError(f"MAT file not found: {path}")
    fmt = detect_format(path)
    variables = list_variables(path, fmt)
    signal, others = _plan(variables, path, max_elements)
    loaded = load_variables(path, fmt, signal, others, max_elements=max_elements,
                            metadata_bytes=METADATA_MAX_BYTES,
                            field_limit=_METADATA_MAX_ELEMENTS)
    request = [("the request", label)] if label else []
    return _interpret(variables, loaded, signal, path, Path(root) if root else None, fmt,
                      max_elements, request)


def _plan(variables: dict[str, MatVar], path: Path,
          max_elements: int) -> tuple[str, list[str]]:
    """Choose the signal and the other variables to load; refuse an oversized signal."""
    usable = {n: v for n, v in variables.items() if not n.startswith("__")}
    # A scalar named x or y is a parameter, not a signal; an empty one names a missing signal.
    named = _find(SIGNAL_NAMES, {n: v for n, v in usable.items() if v.size != 1}, {"numeric"})
    if named is not None and variables[named].size == 0:
        raise MatFileError(f"variable {named!r} is empty; it names the signal, so no other "
                           f"array is taken in its place: {path}")
    candidates = [v for v in usable.values() if v.kind == "numeric" and v.size > 1]
    signal = named or (max(candidates, key=lambda v: v.size).name if candidates else None)
    if signal is None:
        raise MatFileError(f"no numeric array to take the signal from; the file holds "
                           f"{describe(variables)}: {path}")
    var = variables[signal]
    if var.size > max_elements:
        dims = "x".join(str(d) for d in var.shape)
        raise MatFileError(
            f"variable {signal!r} declares {var.size} elements ({dims}), over the limit of "
            f"{max_elements}: {path}"
        )
    small = [n for n, v in usable.items() if n != signal and (
        (v.kind in ("numeric", "logical") and v.size == 1)
        or (v.kind == "char" and v.size <= _STRING_MAX_CHARS))]
    struct = _find(METADATA_NAMES, usable, {"struct"})
    return signal, [*small, *([struct] if struct else [])]


def _interpret(
    variables: dict[str, MatVar], loaded: dict[str, Any], signal_name: str, path: Path,
    root: Path | None, fmt: str, max_elements: int, request: list[tuple[str, str]],
) -> MatSignal:
    signal, extra = _as_signal(loaded[signal_name], signal_name, path)
    struct_name = _find(METADATA_NAMES, {n: variables[n] for n in loaded}, {"struct"})
    struct = json_safe(loaded[struct_name]) if struct_name else None
    metadata: dict[str, Any] = dict(struct) if isinstance(struct, dict) else {}
    scalars = {n: json_safe(v) for n, v in loaded.items() if n not in (signal_name, struct_name)}
    metadata.update(scalars)
    label = resolve_label([*request, *variable_sources(
        scalars, struct if isinstance(struct, dict) else None, struct_name, path),
        *name_sources(path, root)], path)
    fs = _lookup_fs(loaded, metadata, variables, path)
    if fs is not None:
        if signal.size * FS / fs > max_elements:  # a tiny fs would blow the signal up
            raise MatFileError(
                f"resampling {signal.size} samples from {fs:g} Hz to {FS} Hz exceeds the "
                f"limit of {max_elements} elements: {path}")
        signal = _resample(signal, fs)
    with np.errstate(over="ignore"):  # an overflow is refused just below
        samples = signal.astype(np.float32)
    if not np.all(np.isfinite(samples)):  # finite as float64, yet beyond float32's range
        raise MatFileError(f"signal {signal_name!r} holds values beyond float32's range "
                           f"(±{np.finfo(np.float32).max:.3g}): {path}")
    metadata.update(extra)
    metadata.update({"format": fmt, "signal_variable": signal_name,
                     "source_fs": fs, "fs_assumed": fs is None})
    return MatSignal(signal=samples, fs=float(FS), label=label,
                     metadata=metadata, format=fmt, source_fs=fs, variable=signal_name)


def _lookup_fs(loaded: dict[str, Any], metadata: dict[str, Any],
               variables: dict[str, MatVar], path: Path) -> float | None:
    top = _find(FS_NAMES, {n: variables[n] for n in loaded}, {"numeric", "char", "logical"})
    if top is not None:
        name, value = top, json_safe(loaded[top])
    else:
        lowered = {k.lower(): k for k in metadata if metadata[k] not in (None, "")}
        name = next((lowered[n] for n in FS_NAMES if n in lowered), "")
        if not name:
            return None
        value = metadata[name]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise MatFileError(
            f"sampling rate {name!r} = {value!r} is not a positive number: {path}")
    low, high = FS_RANGE
    if not low <= value <= high:
        raise MatFileError(
            f"sampling rate {name!r} = {value:g} Hz is outside {low:g} to {high:g} Hz: "
            f"resampling to {FS} Hz by a factor over 1000 is refused: {path}")
    return float(value)
