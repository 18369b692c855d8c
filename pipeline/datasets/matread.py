"""Read one MATLAB file into a signal, a label and metadata (DOMAIN.md "MAT import").

v4 to v7.2 go through ``scipy.io.loadmat``, v7.3 through h5py (``matformat``). Memory stays
bounded: every variable is first listed with its declared dimensions (headers only), a
signal declaring more than ``max_elements`` elements is refused before anything is loaded,
only the variables the import needs are loaded at all, and what they will take once
loaded (the metadata struct and scalars together: ``METADATA_MAX_BYTES``) is checked
against what the file declares first. Variables named ``__...`` are MATLAB's own (the
``__function_workspace__`` of function handles) and never read. Labels: ``matlabel``.

A read is planned first (``plan_mat``: headers and small variables, so the label, the rate
and the signal's length are known) and the signal read after (``read_signal``): an import
sizes its dataset from every file's plan before it reads a single signal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
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
from pipeline.datasets.scratch import Scratch, all_finite
from pipeline.domain import FS
from pipeline.errors import MatFileError

__all__ = ["MAX_ELEMENTS", "METADATA_MAX_BYTES", "MatPlan", "MatSignal", "json_safe", "plan_mat",
           "read_mat", "read_signal", "resample", "resampled_length"]

MAX_ELEMENTS = 50_000_000  # ~400 MB as float64: far above any real record, far below RAM
METADATA_MAX_BYTES = 16 << 20  # metadata struct and scalars of one file, once loaded
SIGNAL_NAMES = ("signal", "x", "data", "y")
FS_NAMES = ("fs", "sampling_rate", "sample_rate")
METADATA_NAMES = ("metadata", "info", "params")
_METADATA_MAX_ELEMENTS = 64  # larger arrays are data, not metadata
_STRING_MAX_CHARS = 4096


@dataclass
class MatSignal:
    """A signal read from a MAT file at ``fs``; ``label`` is a class key or None.

    ``signal`` is 1-D for the one signal found by name, ``[C, n]`` when channels were chosen.
    """

    signal: np.ndarray  # float32
    fs: float
    label: str | None
    metadata: dict[str, Any]
    format: str  # "v4" | "v5" | "v7.3"
    source_fs: float | None = None  # as stored in the file (or given); None when unknown
    variable: str = ""  # the variable the signal came from (the first channel's)
    channels: list[str] = field(default_factory=list)  # the variables of each channel


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


def _as_signal(value: Any, name: str, path: Path) -> np.ndarray:
    """The loaded variable as one float64 channel (its headers were checked by ``_signal_length``)."""
    array = np.asarray(value)
    if np.iscomplexobj(array) or array.dtype.kind not in "fiu":
        raise MatFileError(f"variable {name!r} is not a real numeric array: {path}")
    array = np.squeeze(array)
    if array.ndim == 2:
        # Samples run along the longer axis; keep the first channel.
        array = (array.T if array.shape[0] < array.shape[1] else array)[:, 0]
    signal = np.asarray(array, dtype=np.float64)  # no copy of what is stored as double
    if not all_finite(signal):
        raise MatFileError(f"signal {name!r} holds NaN or infinite values: {path}")
    return signal


def _signal_length(var: MatVar, path: Path) -> tuple[int, dict[str, Any]]:
    """Samples the variable will give (its longer axis) and what the metadata says of its shape."""
    dims = [d for d in var.shape if d != 1]  # as np.squeeze will leave them
    if len(dims) > 2:
        raise MatFileError(f"variable {var.name!r} has {len(dims)} dimensions; expected 1 or 2")
    if var.size < 2:
        raise MatFileError(f"variable {var.name!r} holds no signal (size {var.size}): {path}")
    extra = {"channels": min(dims), "channel_used": 0} if len(dims) == 2 else {}
    return max(dims), extra


def _ratio(fs: float, rate: float) -> Fraction:
    ratio = Fraction(rate).limit_denominator(1000) / Fraction(fs).limit_denominator(1000)
    return ratio.limit_denominator(10_000)


def resample(signal: np.ndarray, fs: float, rate: float) -> np.ndarray:
    """``signal`` (samples along the last axis) from ``fs`` to ``rate`` by a polyphase filter."""
    if fs == rate:
        return signal
    ratio = _ratio(fs, rate)
    return scipy.signal.resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def resampled_length(samples: int, fs: float, rate: float) -> int:
    """How many samples ``resample`` makes of ``samples`` (scipy's rule: rounded up)."""
    if fs == rate:
        return samples
    ratio = _ratio(fs, rate)
    return -(-samples * ratio.numerator // ratio.denominator)


@dataclass
class MatPlan:
    """What a MAT file's headers and small variables say before its signal is read.

    ``length``: samples per channel the signal will have at ``rate``; ``fs`` the source rate
    (None: unknown, taken to be ``rate``). ``read_signal`` reads the signal it plans.
    """

    path: Path
    format: str  # "v4" | "v5" | "v7.3"
    variables: dict[str, MatVar]
    signals: list[str]  # the variable of each channel
    label: str | None
    fs: float | None
    rate: float
    length: int
    metadata: dict[str, Any]
    max_elements: int
    stacked: bool  # channels were chosen: the signal stays [C, n]


def read_mat(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> MatSignal:
    """Read a MAT file's signal (resampled to ``rate``, 20,480 Hz unless given), label and metadata.

    ``read_signal(plan_mat(path, ...))``: the same arguments, rules and failures as ``plan_mat``.
    """
    return read_signal(plan_mat(path, *args, **kwargs))


def plan_mat(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
    max_elements: int = MAX_ELEMENTS, label: str | None = None, *,
    channels: Sequence[str] | None = None, rate: float | None = FS,
    source_fs: float | None = None, find_label: bool = True,
) -> MatPlan:
    """Plan the read of a MAT file from its headers and small variables, its signal unread.

    Signal: first of ``signal``, ``x``, ``data``, ``y`` (one of them empty is refused),
    else the largest numeric array. With ``channels``, one variable per name or pattern
    (``*_DE_time``), each matching exactly one numeric variable, stacked ``[C, n]``. Label
    (unless ``find_label`` is false: the caller has its own rule), in this order
    (``matlabel``): ``label`` given here, ``label``/``fault_type``/``class``/``fault`` (top
    level, then in the metadata struct), a class key among the folder names below ``root``,
    then in the file name; None if none, a failure if two sources differ. The source rate is
    the file's ``fs`` variable, else ``source_fs``; without either the signal is taken to be
    at ``rate`` (``metadata["fs_assumed"]``), and with ``rate=None`` (keep the native rate)
    it is refused. A scalar variable whose name ends in ``rpm`` is copied to
    ``metadata["rpm"]`` (the shaft speed of the recording).

    Raises:
        InvalidInput: ``label`` is not a class key.
        MatFileError: empty, not a MAT file, truncated or damaged, a link or external data
            (v7.3), a variable over its budget, no usable numeric array, a bad or
            disputed label, a bad fs, channels of different lengths.
    """
    path = Path(path)
    check_label(label)
    if not path.is_file():
        raise MatFileError(f"MAT file not found: {path}")
    fmt = detect_format(path)
    variables = list_variables(path, fmt)
    signals, others = _plan(variables, path, max_elements, channels)
    lengths = [_signal_length(variables[name], path) for name in signals]
    if len({n for n, _ in lengths}) != 1:
        raise MatFileError(f"channels {signals} differ in length ({sorted({n for n, _ in lengths})} "
                           f"samples): {path}")
    loaded = load_variables(path, fmt, variables, [], others, max_elements=max_elements,
                            metadata_bytes=METADATA_MAX_BYTES,
                            field_limit=_METADATA_MAX_ELEMENTS)
    request = [("the request", label)] if label else []
    plan = _interpret(variables, loaded, signals, lengths[0], path, Path(root) if root else None,
                      fmt, max_elements, request, find_label, rate, source_fs)
    plan.stacked = channels is not None
    return plan


def read_signal(plan: MatPlan, scratch: Scratch | None = None) -> MatSignal:
    """Read the signal ``plan`` describes: float32 at ``plan.rate``, its label and metadata.

    With ``scratch``, the signal and what it is read through live in its buffers (valid until
    the next read with it): an import reads file after file without new allocations.

    Raises:
        MatFileError: damaged data, a complex or non-numeric array, non-finite samples, values
            beyond float32, or a file that no longer holds what its headers said.
    """
    path = plan.path
    loaded = load_variables(path, plan.format, plan.variables, plan.signals, [],
                            max_elements=plan.max_elements, metadata_bytes=METADATA_MAX_BYTES,
                            field_limit=_METADATA_MAX_ELEMENTS, scratch=scratch)
    columns = [_as_signal(loaded[name], name, path) for name in plan.signals]
    if plan.fs is not None and plan.fs != plan.rate:
        columns = list(resample(np.stack(columns), plan.fs, plan.rate))
    if columns[0].size != plan.length:
        raise MatFileError(f"signal {plan.signals[0]!r} gave {columns[0].size} samples where its "
                           f"headers declared {plan.length}: {path}")
    # Each channel is cast into its row: no float64 copy of the whole signal is made.
    shape = (len(columns), plan.length)
    samples = scratch.array("samples", shape, np.float32) if scratch else np.empty(shape, np.float32)
    with np.errstate(over="ignore"):  # an overflow is refused just below
        for row, column in zip(samples, columns):
            row[:] = column
    if not all_finite(samples):  # finite as float64, yet beyond float32's range
        raise MatFileError(f"signal {plan.signals[0]!r} holds values beyond float32's range "
                           f"(±{np.finfo(np.float32).max:.3g}): {path}")
    return MatSignal(signal=samples if plan.stacked else samples[0], fs=plan.rate,
                     label=plan.label, metadata=dict(plan.metadata), format=plan.format,
                     source_fs=plan.fs, variable=plan.signals[0],
                     channels=list(plan.signals) if plan.stacked else [])


def _channel_variables(usable: dict[str, MatVar], patterns: Sequence[str], path: Path) -> list[str]:
    """One numeric array per channel name or pattern; none or several is this file's failure."""
    chosen = []
    for pattern in patterns:
        found = sorted(n for n, v in usable.items()
                       if fnmatchcase(n, pattern) and v.kind == "numeric" and v.size > 1)
        if len(found) != 1:
            what = "no numeric array" if not found else f"{len(found)} arrays ({', '.join(found)})"
            raise MatFileError(f"channel {pattern!r} matches {what}; the file holds "
                               f"{describe(usable)}: {path}")
        if found[0] in chosen:
            raise MatFileError(f"channel {pattern!r} names variable {found[0]!r} again: {path}")
        chosen.append(found[0])
    return chosen


def _plan(variables: dict[str, MatVar], path: Path, max_elements: int,
          channels: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Choose the signal(s) and the other variables to load; refuse an oversized signal."""
    usable = {n: v for n, v in variables.items() if not n.startswith("__")}
    if channels is not None:
        signals = _channel_variables(usable, channels, path)
        for name in signals:
            _check_size(variables[name], max_elements, path)
        return signals, _small_and_struct(usable, signals)
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
    _check_size(variables[signal], max_elements, path)
    return [signal], _small_and_struct(usable, [signal])


def _check_size(var: MatVar, max_elements: int, path: Path) -> None:
    if var.size > max_elements:
        dims = "x".join(str(d) for d in var.shape)
        raise MatFileError(
            f"variable {var.name!r} declares {var.size} elements ({dims}), over the limit of "
            f"{max_elements}: {path}"
        )


def _small_and_struct(usable: dict[str, MatVar], signals: list[str]) -> list[str]:
    small = [n for n, v in usable.items() if n not in signals and (
        (v.kind in ("numeric", "logical") and v.size == 1)
        or (v.kind == "char" and v.size <= _STRING_MAX_CHARS))]
    struct = _find(METADATA_NAMES, usable, {"struct"})
    return [*small, *([struct] if struct else [])]


def _interpret(
    variables: dict[str, MatVar], loaded: dict[str, Any], signal_names: list[str],
    shape: tuple[int, dict[str, Any]], path: Path, root: Path | None, fmt: str,
    max_elements: int, request: list[tuple[str, str]], find_label: bool, rate: float | None,
    source_fs: float | None,
) -> MatPlan:
    length, extra = shape
    struct_name = _find(METADATA_NAMES, {n: variables[n] for n in loaded}, {"struct"})
    struct = json_safe(loaded[struct_name]) if struct_name else None
    metadata: dict[str, Any] = dict(struct) if isinstance(struct, dict) else {}
    scalars = {n: json_safe(v) for n, v in loaded.items() if n != struct_name}
    metadata.update(scalars)
    label = resolve_label([*request, *variable_sources(
        scalars, struct if isinstance(struct, dict) else None, struct_name, path),
        *name_sources(path, root)], path) if find_label else None
    fs = _lookup_fs(loaded, metadata, variables, path, rate) or source_fs
    if fs is None and rate is None:
        raise MatFileError(f"no sampling rate: the file has no fs variable and none was given "
                           f"for it, so its native rate is unknown: {path}")
    target = rate if rate is not None else fs
    if fs is not None and target is not None:
        if length * target / fs > max_elements:  # a tiny fs would blow the signal up
            raise MatFileError(
                f"resampling {length} samples from {fs:g} Hz to {target:g} Hz exceeds "
                f"the limit of {max_elements} elements: {path}")
        length = resampled_length(length, fs, target)
    metadata.update(extra)
    metadata.update({"format": fmt, "signal_variable": signal_names[0],
                     "source_fs": fs, "fs_assumed": fs is None})
    rpm = _shaft_speed(scalars)
    if rpm is not None:
        metadata["rpm"] = rpm
    return MatPlan(path=path, format=fmt, variables=variables, signals=signal_names, label=label,
                   fs=fs, rate=float(target), length=length,  # type: ignore[arg-type]
                   metadata=metadata, max_elements=max_elements, stacked=False)


def _shaft_speed(scalars: dict[str, Any]) -> float | None:
    """The first positive number among variables named ``rpm`` or ``...RPM`` (``X097RPM``)."""
    for name, value in scalars.items():
        if name.lower().endswith("rpm") and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _lookup_fs(loaded: dict[str, Any], metadata: dict[str, Any],
               variables: dict[str, MatVar], path: Path, rate: float | None) -> float | None:
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
    # Resampling by over 1000x either way is refused: no vibration record needs it, and the
    # polyphase filter grows with the factor (a factor of 10^6 would take gigabytes).
    target = rate or FS
    low, high = target / 1000, target * 1000
    if not low <= value <= high:
        raise MatFileError(
            f"sampling rate {name!r} = {value:g} Hz is outside {low:g} to {high:g} Hz: "
            f"resampling to {target:g} Hz by a factor over 1000 is refused: {path}")
    return float(value)
