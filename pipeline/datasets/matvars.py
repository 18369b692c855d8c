"""What a MAT file declares about a variable, in the same terms for every format."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import MatFileError

__all__ = ["NUMERIC_CLASSES", "OBJECT_BYTES", "Budget", "MatVar", "describe", "kind_of"]

NUMERIC_CLASSES = frozenset({"double", "single", "int8", "int16", "int32", "int64",
                             "uint8", "uint16", "uint32", "uint64"})
OBJECT_BYTES = 256  # what one loaded value costs beyond its data (array header, dict slot)


@dataclass(frozen=True)
class MatVar:
    """A variable as declared in the file: name, MATLAB dimensions, kind and class."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "numeric" | "char" | "logical" | "struct" | "other"
    mclass: str = ""  # MATLAB's class name ("double", "sparse", "cell", ...)
    # Where the format's reader finds it again (v5: the element's V5Var), so loading
    # does not walk the file's headers a second time.
    element: Any = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of elements the dimensions declare (a Python int: never overflows)."""
        return math.prod(self.shape)


def kind_of(mclass: str | None) -> str:
    """The kind the import reads a MATLAB class as."""
    if mclass in NUMERIC_CLASSES:
        return "numeric"
    return mclass if mclass in ("char", "logical", "struct") else "other"


def describe(variables: dict[str, MatVar], most: int = 10) -> str:
    """List variables as ``name (class, 3x4)`` for a failure reason."""
    if not variables:
        return "no variables (a header only)"
    items = [f"{v.name} ({v.mclass or v.kind}, {'x'.join(map(str, v.shape)) or 'scalar'})"
             for v in list(variables.values())[:most]]
    more = len(variables) - most
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


class Budget:
    """Bytes that loaded values may take; spending past the limit raises ``MatFileError``."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.what, self.spent = limit, what, 0

    def spend(self, n: int) -> None:
        """Count ``n`` more bytes; refuse once the total is over the limit."""
        self.spent += n
        if self.spent > self.limit:
            raise MatFileError(f"{self.what} would take over {self.limit} bytes once loaded, "
                               f"the most a file may use")
