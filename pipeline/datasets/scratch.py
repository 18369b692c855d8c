"""Arrays an import reuses from one file to the next.

An import allocates a few arrays the size of a file for every file it reads. glibc hands
blocks that large back to the kernel when they are freed, and the next file's arrays are
then faulted in again page by page: at hundreds of MB/s of files, that cost more than the
reading itself. Reusing one buffer per role keeps memory bounded by the largest file.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Scratch", "all_finite"]


class Scratch:
    """Buffers by role, grown to the largest request and reused; an array taken for a role
    is valid until the same role is taken again."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, role: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` in the buffer of ``role``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get(role)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self._buffers[role] = np.empty(nbytes, np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


def all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite, without a boolean array the size of ``values``: a NaN
    or an infinity makes the sum non-finite; only a sum that overflows is checked value by value."""
    return bool(np.isfinite(values.sum(dtype=np.float64)) or np.isfinite(values).all())
