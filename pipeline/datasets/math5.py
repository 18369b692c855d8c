"""MAT v7.3 files (HDF5): list and load variables, refusing anything that reaches outside.

A v7.3 file is HDF5 behind a 512-byte MATLAB header; an HDF5 file without that header
(written by h5py) is read the same way. HDF5 can make a file read data from elsewhere: an
external link, a virtual dataset or external storage names another file, and a soft link
names a path that may not exist. MATLAB writes none of them, so the whole file is walked
once, before any variable is touched, and a file holding one is refused.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.datasets.matvars import OBJECT_BYTES, Budget, MatVar, kind_of
from pipeline.errors import MatFileError

__all__ = ["list_h5", "load_h5"]

# What h5py and HDF5 raise on a damaged or hostile file varies with the damage.
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)
_MAX_OBJECTS = 100_000  # MATLAB's #refs# holds one object per cell element; far below this
_MAX_CHUNKS = 100_000
_DEFLATE, _SHUFFLE, _FLETCHER32 = 1, 2, 3
_MAX_DEPTH = 4  # deeper metadata is dropped by json_safe anyway
_STRING_MAX_BYTES = 4096


@contextmanager
def _opened(path: Path) -> Iterator[h5py.File]:
    """Open the file, turning whatever HDF5 raises on a damaged one into ``MatFileError``."""
    try:
        with h5py.File(path, "r") as handle:
            yield handle
    except MatFileError:  # a ValueError too: ours already says what is wrong
        raise
    except _H5_ERRORS as error:
        raise MatFileError(f"MAT v7.3 file is truncated or corrupt: {path} ({error})") from None


def _refuse_outside_links(handle: h5py.File, path: Path) -> None:
    """Walk every link and dataset once, without following a link that is not hard."""
    seen: set[Any] = set()
    groups = [handle]
    while groups:
        group = groups.pop()
        for name in group:
            where = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise MatFileError(f"{where!r} is an external link to {link.filename}:{link.path}"
                                   f"; a MAT file never reads data from another file: {path}")
            if not isinstance(link, h5py.HardLink):
                target = getattr(link, "path", "?")
                raise MatFileError(f"{where!r} is a soft link to {target!r}; MATLAB never "
                                   f"writes links, and this one may lead nowhere: {path}")
            obj = group[name]
            if obj.id in seen:
                continue
            seen.add(obj.id)
            if len(seen) > _MAX_OBJECTS:
                raise MatFileError(f"MAT v7.3 file holds over {_MAX_OBJECTS} objects: {path}")
            if isinstance(obj, h5py.Group):
                groups.append(obj)
            elif isinstance(obj, h5py.Dataset) and obj.is_virtual:
                raise MatFileError(f"{where!r} is a virtual dataset mapping data from other "
                                   f"files; a MAT file never reads data from another file: {path}")
            elif isinstance(obj, h5py.Dataset) and obj.external:
                raise MatFileError(f"{where!r} keeps its data in the external file "
                                   f"{obj.external[0][0]!r}; a MAT file never reads data from "
                                   f"another file: {path}")


def list_h5(path: Path) -> dict[str, MatVar]:
    """Return every top-level variable's declared dimensions and kind, reading no data.

    Raises:
        MatFileError: damaged, or a link, virtual dataset or external storage anywhere.
    """
    with _opened(path) as handle:
        _refuse_outside_links(handle, path)
        found = {}
        for name, obj in handle.items():
            if name.startswith("#"):  # MATLAB's #refs# and #subsystem#
                continue
            mclass = _h5_class(obj)
            if isinstance(obj, h5py.Group):
                found[name] = MatVar(name, (1, 1), _h5_kind(obj), mclass or "struct")
            elif isinstance(obj, h5py.Dataset):
                found[name] = MatVar(name, _h5_shape(obj), _h5_kind(obj),
                                     mclass or obj.dtype.name)
            else:  # a named datatype
                found[name] = MatVar(name, (), "other", "datatype")
        return found


def load_h5(path: Path, signals: list[str], others: list[str], signal_bytes: int,
            budget: Budget, field_limit: int) -> dict[str, Any]:
    """Load ``signals`` (each at most ``signal_bytes``) and ``others`` within ``budget``.

    Struct fields over ``field_limit`` elements are skipped unread. Compressed data is
    inflated chunk by chunk in Python before HDF5 reads it, since HDF5's own inflater grows
    its buffer for as long as a chunk keeps inflating.
    """
    with _opened(path) as handle:
        _refuse_outside_links(handle, path)
        loaded = {}
        for name in (*signals, *others):
            spend = Budget(signal_bytes, "the signal") if name in signals else budget
            try:
                loaded[name] = _read(handle[name], spend, field_limit, 0)
            except MatFileError as error:
                raise MatFileError(f"variable {name!r} refused: {error}: {path}") from None
        return loaded


def _h5_class(obj: Any) -> str | None:
    value = obj.attrs.get("MATLAB_class")
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value if isinstance(value, str) else None


def _vlen_string(obj: h5py.Dataset) -> bool:
    info = h5py.check_string_dtype(obj.dtype)
    return info is not None and info.length is None


def _h5_kind(obj: Any) -> str:
    mclass = _h5_class(obj)
    if isinstance(obj, h5py.Group):
        return "struct" if mclass in (None, "struct") else "other"
    if mclass is not None:
        return kind_of(mclass) if mclass != "struct" else "other"
    # An HDF5 file not written by MATLAB: judge by dtype. A variable-length string is read
    # only alone (a scalar), through a fixed-length view that bounds it.
    if obj.dtype.kind in "fiu":
        return "numeric"
    if obj.dtype.kind == "S" or (_vlen_string(obj) and obj.shape == ()):
        return "char"
    return "other"


def _h5_shape(obj: h5py.Dataset) -> tuple[int, ...]:
    if obj.attrs.get("MATLAB_empty"):
        return (0,)
    # MATLAB writes column-major arrays with their dimensions reversed.
    return tuple(reversed(obj.shape)) if _h5_class(obj) is not None else tuple(obj.shape)


def _read(obj: Any, budget: Budget, field_limit: int, depth: int) -> Any:
    kind = _h5_kind(obj)
    budget.spend(OBJECT_BYTES)
    if isinstance(obj, h5py.Group):
        if depth >= _MAX_DEPTH:
            return None
        return {name: _read(child, budget, field_limit, depth + 1)
                for name, child in obj.items()
                # a field too large for metadata is never read
                if not (isinstance(child, h5py.Dataset)
                        and math.prod(_h5_shape(child)) > field_limit)}
    if not isinstance(obj, h5py.Dataset) or kind not in ("numeric", "logical", "char"):
        return None
    if obj.attrs.get("MATLAB_empty"):
        return np.zeros(0)
    if _vlen_string(obj):
        budget.spend(_STRING_MAX_BYTES)
        return obj.astype(f"S{_STRING_MAX_BYTES}")[()].decode("utf-8", "replace")
    budget.spend(obj.size * obj.dtype.itemsize)
    _check_chunks(obj)
    raw = obj[()]
    if kind == "char":
        return _text(raw)
    array = np.asarray(raw)
    if array.dtype.names:  # MATLAB complex: compound (real, imag)
        return None
    array = array.T if _h5_class(obj) is not None else array
    return array.astype(bool) if kind == "logical" else array


def _text(raw: Any) -> str | list[str]:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    array = np.asarray(raw)
    if array.dtype.kind == "S":
        return [b.decode("utf-8", "replace") for b in array.ravel().tolist()]
    return "".join(map(chr, array.ravel().tolist()))  # MATLAB's UTF-16 code units


def _check_chunks(obj: h5py.Dataset) -> None:
    """Refuse a chunk that inflates past its declared size, inflating at most one over."""
    plist = obj.id.get_create_plist()
    filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
    after = filters[filters.index(_DEFLATE) + 1:] if _DEFLATE in filters else []
    # Other filters (lzf, szip, plugins) cannot be inflated here first, so are not read.
    if any(f not in (_DEFLATE, _SHUFFLE, _FLETCHER32) for f in filters) or _SHUFFLE in after:
        raise MatFileError(f"it is stored through HDF5 filters {filters}; only deflate, "
                           f"shuffle and fletcher32 are read")
    if _DEFLATE not in filters:
        return
    chunk_bytes = math.prod(obj.chunks) * obj.dtype.itemsize
    count = obj.id.get_num_chunks()
    if count > _MAX_CHUNKS:
        raise MatFileError(f"it is stored in {count} chunks (at most {_MAX_CHUNKS})")
    deflate_bit = 1 << filters.index(_DEFLATE)
    for k in range(count):
        info = obj.id.get_chunk_info(k)
        if info.filter_mask & deflate_bit:  # stored without compression
            continue
        _, stored = obj.id.read_direct_chunk(info.chunk_offset)
        if _FLETCHER32 in after and not info.filter_mask & (1 << filters.index(_FLETCHER32)):
            stored = stored[:-4]  # the checksum follows the compressed data
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(stored, chunk_bytes + 1)
        except zlib.error as error:
            raise MatFileError(f"a compressed chunk is corrupt ({error})") from None
        if len(out) > chunk_bytes:
            raise MatFileError(f"a compressed chunk inflates past its {chunk_bytes} bytes "
                               f"(a decompression bomb)")
