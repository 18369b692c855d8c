"""MAT v5 structure check: walk a file's elements the way scipy will, before it reads them.

``scipy.io.loadmat`` trusts every size a v5 file declares: a forged byte count is
allocated before the read that then fails, a compressed struct is inflated whole, and some
malformed type codes are looked up past the end of its tables. So the import walks each
variable it will load first, reading the same tags in the same order as scipy's reader,
and checks that every element lies inside its parent, that types and dimensions are ones
MATLAB writes, that compressed data inflates to exactly its declared length, and that the
values loaded will fit a budget. Data is skipped (inflated in bounded chunks when
compressed), never held, so the walk itself runs in a few megabytes.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from pipeline.datasets.matvars import OBJECT_BYTES, Budget
from pipeline.errors import MatFileError

__all__ = ["CLASS_NAMES", "V5Var", "Walked", "check_v5_variable", "read_numeric", "scan_v5"]

_HEADER_BYTES = 128
_MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 5, 6, 14, 15
_MI_INT8, _MI_UTF8 = 1, 16
# Byte size of each numeric data type scipy reads (the types MATLAB writes).
_NUMERIC_TYPES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}
_NUMPY_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
                13: "u8"}
_CHAR_TYPES = frozenset({1, 2, 4, 16, 17, 18})  # int8, uint8, uint16, utf-8/16/32
_CELL, _STRUCT, _OBJECT, _CHAR, _SPARSE, _FUNCTION, _OPAQUE = 1, 2, 3, 4, 5, 16, 17
_CLASS_BYTES = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double",
               7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32",
               13: "uint32", 14: "int64", 15: "uint64", 16: "function", 17: "opaque"}
_MAX_DEPTH = 16  # scipy reads nested cells by C recursion; MATLAB data is never this deep
_MAX_DIMS_BYTES = 128  # scipy's limit: 32 dimensions of 4 bytes
_MAX_NAME_BYTES = 1 << 20  # one name element (variable, class or all of a struct's fields)
_MAX_FIELD_NAME = 4096
_CHUNK = 1 << 20


@dataclass(frozen=True)
class V5Var:
    """A top-level variable as its header declares it, and where its element lies."""

    name: str
    shape: tuple[int, ...]
    mclass: str  # scipy's class names ("double", "char", "struct", ...), "logical", "unknown"
    offset: int  # of the element's tag
    end: int  # just past the element
    compressed: bool
    order: str  # the file's byte order, as struct writes it ("<" or ">")


class _Damaged(Exception):
    """The walk met something scipy could not read safely; the reader turns it into a reason."""


class _Source(Protocol):
    pos: int

    def read(self, n: int) -> bytes: ...

    def skip(self, n: int) -> None: ...


class _Raw:
    """The file's bytes between two offsets."""

    def __init__(self, handle: BinaryIO, start: int, end: int) -> None:
        handle.seek(start)
        self.handle, self.pos, self.end = handle, 0, end - start

    def read(self, n: int) -> bytes:
        self._check(n)
        data = self.handle.read(n)
        if len(data) != n:
            raise _Damaged("the file ends inside a variable")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self._check(n)
        self.handle.seek(n, 1)
        self.pos += n

    def _check(self, n: int) -> None:
        if self.pos + n > self.end:
            raise _Damaged(f"an element runs {self.pos + n - self.end} bytes past its variable")


class _Inflated:
    """The inflated bytes of one compressed element, produced at most ``_CHUNK`` at a time."""

    def __init__(self, handle: BinaryIO, start: int, length: int) -> None:
        handle.seek(start)
        self.handle, self.left, self.pos = handle, length, 0
        self.inflater = zlib.decompressobj()
        self.pending = b""

    def _fill(self, want: int) -> None:
        while len(self.pending) < want:
            if self.inflater.unconsumed_tail:
                data = self.inflater.unconsumed_tail
            elif self.left and not self.inflater.eof:
                data = self.handle.read(min(_CHUNK, self.left))
                if not data:
                    raise _Damaged("the file ends inside a compressed variable")
                self.left -= len(data)
            else:
                return
            try:
                # max_length keeps a bomb from inflating more than is asked for
                self.pending += self.inflater.decompress(data, want - len(self.pending))
            except zlib.error as error:
                raise _Damaged(f"compressed data is corrupt ({error})") from None

    def read(self, n: int) -> bytes:
        self._fill(n)
        if len(self.pending) < n:
            raise _Damaged("compressed data ends before the variable it holds")
        data, self.pending = self.pending[:n], self.pending[n:]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        while n:
            n -= len(self.read(min(n, _CHUNK)))

    def finish(self) -> None:
        """Check that the compressed stream ends exactly where its variable does."""
        self._fill(1)
        if self.pending:
            raise _Damaged("compressed data holds more than the variable it declares")
        if not self.inflater.eof:
            raise _Damaged("compressed data does not end (cut short or corrupt)")


class _Walker:
    """Reads tags and headers in scipy's order, checking each element against its parent."""

    def __init__(self, src: _Source, order: str, budget: Budget | None) -> None:
        self.src, self.order, self.budget = src, order, budget
        self.end = math.inf  # the end of the matrix being walked, in source positions
        self.complex = False  # whether any numeric value met is complex
        # Where the data element of a top-level real numeric array lies (source position of
        # its tag), so that its values can be read straight into an array.
        self.numeric_at: int | None = None

    def _ints(self, fmt: str, data: bytes) -> tuple[int, ...]:
        return struct.unpack(self.order + fmt, data)

    def _spend(self, n: int) -> None:
        if self.budget is not None:
            self.budget.spend(n)

    def _room(self, n: int, what: str) -> None:
        if self.src.pos + n > self.end:
            raise _Damaged(f"{what} declares {n} bytes, past the end of its matrix")

    def tag(self) -> tuple[int, int, bytes | None]:
        """Return (type, byte count, data of a small element or None)."""
        self._room(8, "a tag")
        raw = self.src.read(8)
        first, second = self._ints("II", raw)
        if first >> 16:  # small data element: type and size share the first word
            if first >> 16 > 4:
                raise _Damaged(f"a small data element declares {first >> 16} bytes (at most 4)")
            return first & 0xFFFF, first >> 16, raw[4:4 + (first >> 16)]
        return first, second, None

    def fits(self, nbytes: int, small: bytes | None, what: str) -> None:
        """Refuse an element whose data and padding would run past its matrix."""
        if small is None:
            self._room(nbytes + -nbytes % 8, what)

    def data(self, nbytes: int, small: bytes | None, cap: int, what: str) -> bytes:
        """Read an element's data (at most ``cap`` bytes) and its padding."""
        if small is not None:
            return small
        if nbytes > cap:
            raise _Damaged(f"{what} declares {nbytes} bytes (at most {cap})")
        self.fits(nbytes, small, what)
        data = self.src.read(nbytes)
        self.src.skip(-nbytes % 8)
        return data

    def skip_data(self, nbytes: int, small: bytes | None, what: str) -> None:
        """Skip an element's data and its padding."""
        self.fits(nbytes, small, what)
        if small is None:
            self.src.skip(nbytes + -nbytes % 8)

    def name(self) -> bytes:
        """An int8 string: a variable's, class's, or struct's field names."""
        mdtype, nbytes, small = self.tag()
        if mdtype not in (_MI_INT8, _MI_UTF8):
            raise _Damaged(f"a name has data type {mdtype}, not int8 text")
        return self.data(nbytes, small, _MAX_NAME_BYTES, "a name")

    def header(self) -> tuple[int, int, tuple[int, ...], bytes]:
        """Read a matrix header: (class, flags, dimensions, name)."""
        self._room(16, "array flags")
        flags = self._ints("I", self.src.read(16)[8:12])[0]  # scipy ignores the flags' tag
        mclass = flags & 0xFF
        if mclass == _OPAQUE:  # opaque headers carry a name only
            return mclass, flags, (), self.name()
        mdtype, nbytes, small = self.tag()
        if mdtype not in (_MI_INT32, _MI_UINT32) or nbytes % 4:
            raise _Damaged(f"dimensions have data type {mdtype} and {nbytes} bytes")
        raw = self.data(nbytes, small, _MAX_DIMS_BYTES, "the dimensions")
        dims = self._ints(f"{nbytes // 4}i", raw)
        # MATLAB writes two dimensions or more; scipy indexes the last of a char array's
        # without looking, and crashes the interpreter on none.
        if len(dims) < 2 or any(d < 0 for d in dims):
            raise _Damaged(f"dimensions {dims}")
        return mclass, flags, dims, self.name()

    def matrix(self, nbytes: int, depth: int) -> None:
        """Walk one matrix of ``nbytes`` whose tag was just read."""
        self._spend(OBJECT_BYTES)
        if nbytes == 0:  # an empty matrix, as MATLAB writes [] inside a cell
            return
        if depth > _MAX_DEPTH:
            raise _Damaged(f"values nested more than {_MAX_DEPTH} deep")
        self._room(nbytes, "a matrix")
        start, outer = self.src.pos, self.end
        self.end = start + nbytes
        mclass, flags, dims, _ = self.header()
        n = math.prod(dims)
        self.complex |= mclass in (*_CLASS_BYTES, _SPARSE) and bool(flags >> 11 & 1)
        if mclass in _CLASS_BYTES:
            at = self.src.pos
            self._numeric(n, mclass, bool(flags >> 11 & 1))
            if depth == 0 and not flags >> 11 & 1:
                self.numeric_at = at
        elif mclass == _CHAR:
            self._char(n)
        elif mclass == _SPARSE:
            for _ in range(4 if flags >> 11 & 1 else 3):  # rows, columns, data (real, imag)
                self._element(-1, "sparse data")
        elif mclass == _CELL:
            self._nested(n, depth)
        elif mclass in (_STRUCT, _OBJECT):
            self._struct(n, depth, mclass == _OBJECT)
        elif mclass == _FUNCTION:
            self._nested(1, depth)
        elif mclass == _OPAQUE:
            raise MatFileError("it holds a MATLAB object (opaque class), which scipy cannot "
                               "read safely")
        else:
            raise _Damaged(f"unknown array class {mclass}")
        if self.src.pos != self.end:
            raise _Damaged(f"a matrix declares {nbytes} bytes but holds {self.src.pos - start}")
        self.end = outer

    def _element(self, n: int, what: str, class_bytes: int = 0) -> None:
        """Skip one numeric element of ``n`` values (-1: any count, sparse data).

        What it loads as is spent before a byte of it is inflated: as stored, or in
        MATLAB's class (``class_bytes`` a value, mat_dtype), whichever is larger; sparse
        data twice over (scipy copies it into its matrix).
        """
        mdtype, nbytes, small = self.tag()
        size = _NUMERIC_TYPES.get(mdtype)
        # Sparse logical data is stored a byte a value under a wider type: any count there.
        if size is None or (n >= 0 and nbytes != n * size):
            raise _Damaged(f"{what} has data type {mdtype} and {nbytes} bytes "
                           f"for {n if n >= 0 else 'its'} values")
        self.fits(nbytes, small, what)  # damage is named as such, not as a budget overrun
        self._spend(max(nbytes, n * class_bytes) if n >= 0 else 2 * nbytes)
        self.skip_data(nbytes, small, what)

    def _numeric(self, n: int, mclass: int, complex_: bool) -> None:
        for _ in range(2 if complex_ else 1):
            self._element(n, "numeric data", _CLASS_BYTES[mclass])

    def _char(self, n: int) -> None:
        mdtype, nbytes, small = self.tag()
        if nbytes and mdtype not in _CHAR_TYPES:
            raise _Damaged(f"text has data type {mdtype}")
        self.fits(nbytes, small, "text")
        self._spend(4 * max(n, nbytes))  # numpy holds 4 bytes a character
        self.skip_data(nbytes, small, "text")

    def _nested(self, count: int, depth: int) -> None:
        # scipy allocates the container before reading its members: bound it first.
        self._room(8 * count, f"a container of {count} values")
        self._spend(8 * count)
        for _ in range(count):
            self._room(8, "a nested matrix")
            mdtype, nbytes = self._ints("II", self.src.read(8))
            if mdtype != _MI_MATRIX:
                raise _Damaged(f"a nested value has data type {mdtype}, not a matrix")
            self.matrix(nbytes, depth + 1)

    def _struct(self, n: int, depth: int, is_object: bool) -> None:
        if is_object:
            self.name()
        mdtype, nbytes, small = self.tag()
        if mdtype not in (_MI_INT32, _MI_UINT32) or nbytes != 4:
            raise _Damaged(f"a field name length has data type {mdtype} and {nbytes} bytes")
        length = self._ints("i", self.data(nbytes, small, 4, "a field name length"))[0]
        if not 0 < length <= _MAX_FIELD_NAME:
            raise _Damaged(f"field names declared {length} bytes long")
        fields = len(self.name()) // length
        if not fields:
            self._spend(8 * n)  # scipy makes an empty object array of the declared shape
            return
        self._nested(n * fields, depth)


def _order(head: bytes) -> str:
    # scipy reads 'IM' as little-endian and anything else as big-endian.
    return "<" if head[126:128] == b"IM" else ">"


def scan_v5(path: Path) -> tuple[str, list[V5Var]]:
    """List a v5 file's variables from their headers; return (byte order, variables).

    Every element must lie whole inside the file: a file cut short is refused here, even
    where the cut falls in a variable the import would not read.

    Raises:
        MatFileError: a bad header, an element past the end of the file, a damaged header.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
            size = handle.seek(0, 2)
            if len(head) < _HEADER_BYTES:
                raise MatFileError(f"MAT file is truncated (header of {len(head)} bytes): {path}")
            _check_version(head, path)
            order = _order(head)
            found: list[V5Var] = []
            pos = _HEADER_BYTES
            while pos < size:
                found.append(_scan_one(handle, pos, size, order, len(found), path))
                pos = found[-1].end
    except OSError as error:
        raise MatFileError(f"MAT file cannot be read: {path} ({error})") from None
    return order, found


def _check_version(head: bytes, path: Path) -> None:
    # scipy takes the version from these bytes, whatever the text says; only 1 is v5.
    major = head[124 + int(head[126] == ord("I"))]
    if major != 1:
        raise MatFileError(f"MAT file header says version {major}, not 5: {path}")


def _scan_one(handle: BinaryIO, pos: int, size: int, order: str, index: int,
              path: Path) -> V5Var:
    handle.seek(pos)
    raw = handle.read(8)
    if len(raw) < 8:
        raise MatFileError(f"MAT file is truncated: {size - pos} stray bytes after variable "
                           f"{index}: {path}")
    mdtype, nbytes = struct.unpack(order + "II", raw)
    if mdtype not in (_MI_MATRIX, _MI_COMPRESSED) or nbytes == 0:
        raise MatFileError(f"MAT file is corrupt: element {index + 1} at byte {pos} has data "
                           f"type {mdtype} and {nbytes} bytes, not a variable: {path}")
    end = pos + 8 + nbytes
    compressed = mdtype == _MI_COMPRESSED
    try:
        src: _Source
        if compressed:
            src = _Inflated(handle, pos + 8, min(end, size) - pos - 8)
            inner = struct.unpack(order + "II", src.read(8))[0]
            if inner != _MI_MATRIX:
                raise _Damaged(f"compressed data holds data type {inner}, not a matrix")
        else:
            src = _Raw(handle, pos + 8, min(end, size))
        mclass, flags, dims, name = _Walker(src, order, None).header()
    except _Damaged as error:
        if end > size:
            raise _cut_short(index, None, nbytes, pos, size, path) from None
        raise MatFileError(f"MAT file is corrupt: variable {index + 1} at byte {pos}: "
                           f"{error}: {path}") from None
    text = name.decode("latin-1") or "__function_workspace__"  # scipy's name for it
    if end > size:
        raise _cut_short(index, text, nbytes, pos, size, path)
    kind = "logical" if flags >> 9 & 1 else CLASS_NAMES.get(mclass, "unknown")
    return V5Var(text, tuple(dims), kind, pos, end, compressed, order)


def _cut_short(index: int, name: str | None, nbytes: int, pos: int, size: int,
               path: Path) -> MatFileError:
    which = f"variable {name!r}" if name else f"variable {index + 1}"
    return MatFileError(f"MAT file is truncated: {which} declares {nbytes} bytes at byte "
                        f"{pos}, but the file ends {pos + 8 + nbytes - size} bytes short: {path}")


@dataclass(frozen=True)
class Walked:
    """What walking a variable found: complex values anywhere; and, for a real numeric array
    stored uncompressed, the file offset of its data element's tag (else None)."""

    complex: bool
    numeric_at: int | None


def check_v5_variable(path: Path, var: V5Var, budget: Budget) -> Walked:
    """Walk every element of ``var`` as scipy will read it, spending ``budget``.

    Raises:
        MatFileError: an element scipy would misread, or values over the budget.
    """
    order = var.order
    try:
        with path.open("rb") as handle:
            length = var.end - var.offset - 8
            if var.compressed:
                inflated = _Inflated(handle, var.offset + 8, length)
                mdtype, nbytes = struct.unpack(order + "II", inflated.read(8))
                if mdtype != _MI_MATRIX:
                    raise _Damaged(f"compressed data holds data type {mdtype}, not a matrix")
                walker = _Walker(inflated, order, budget)
                walker.matrix(nbytes, 0)
                inflated.finish()
            else:
                walker = _Walker(_Raw(handle, var.offset + 8, var.end), order, budget)
                walker.matrix(length, 0)
    except _Damaged as error:
        raise MatFileError(f"MAT file is corrupt: variable {var.name!r}: {error}: {path}") from None
    except MatFileError as error:  # over the budget
        raise MatFileError(f"variable {var.name!r} refused: {error}: {path}") from None
    except OSError as error:
        raise MatFileError(f"MAT file cannot be read: {path} ({error})") from None
    plain = None if var.compressed or walker.numeric_at is None else var.offset + 8 + walker.numeric_at
    return Walked(walker.complex, plain)


def read_numeric(path: Path, var: V5Var, offset: int,
                 allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray]) -> np.ndarray | None:
    """The values of a real numeric array whose data element's tag ``check_v5_variable``
    found at ``offset``, read straight from the file into an array from ``allocate(shape,
    dtype)`` (as stored: the class conversion is the caller's), shaped and squeezed as scipy
    gives them. None for data held in the tag itself (a few bytes), which scipy reads as well.

    Raises:
        MatFileError: the file no longer holds what the walk found there.
    """
    try:
        with path.open("rb", buffering=0) as handle:
            handle.seek(offset)
            first, nbytes = struct.unpack(var.order + "II", handle.read(8))
            if first >> 16:
                return None
            values = allocate((nbytes // _NUMERIC_TYPES[first],),
                              np.dtype(_NUMPY_TYPES[first]).newbyteorder(var.order))
            if handle.readinto(memoryview(values).cast("B")) != nbytes:
                raise OSError("the file ends inside the data")
    except (OSError, KeyError, struct.error) as error:
        raise MatFileError(f"MAT file changed or cut short while read: variable {var.name!r}: "
                           f"{error}: {path}") from None
    return np.squeeze(values.reshape(var.shape, order="F"))
