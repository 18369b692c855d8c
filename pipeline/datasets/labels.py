"""Label rules for imported recordings: a user's own classes, from paths, a variable or a manifest.

A rule names where each file's class comes from, exactly one of:

- ``patterns``: glob patterns on the path below the import root, each mapped to a class
  (``{"**/IR007*": "inner_race"}``; ``**/`` also matches at the top). A file matched by
  patterns of two classes is ambiguous, one matched by none unlabelled: both are listed
  with the reason, never guessed.
- ``variable``: a variable of each MAT file (or a column of the manifest) that holds the class.
- ``manifest``: a CSV file with ``path`` (below the import root) and ``label`` columns, and
  optional ``group`` (the recording a file belongs to, for splits), ``fs`` (its sampling
  rate) and further metadata columns (``rpm``, ``load``...), copied into each record.

``classes`` declares the class set and its order (the label indices); without it the classes
are those the rule names: the patterns' classes in the order given, else sorted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import InvalidInput, MatFileError

__all__ = ["LabelRule", "Manifest", "read_manifest"]

_MANIFEST_COLUMNS = ("path", "label")


@dataclass(frozen=True)
class Manifest:
    """A manifest's rows by path (posix, relative to the import root)."""

    rows: Mapping[str, Mapping[str, Any]]

    def row(self, rel: str) -> Mapping[str, Any]:
        """The row of one file; a file the manifest does not list is this file's failure."""
        try:
            return self.rows[rel]
        except KeyError:
            raise MatFileError(f"not listed in the manifest: {rel}") from None


def read_manifest(path: Path, root: Path) -> Manifest:
    """Read a manifest CSV (``path``, ``label``, optional ``group``, ``fs`` and metadata columns).

    Raises:
        InvalidInput: unreadable, a required column missing, or a path listed twice.
    """
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"path": str, "label": str, "group": str})
    except (OSError, ValueError) as error:
        raise InvalidInput(f"manifest {path} cannot be read: {error}") from None
    missing = [c for c in _MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInput(f"manifest {path} lacks column(s) {', '.join(missing)}; it has "
                           f"{', '.join(map(str, table.columns))}")
    rows: dict[str, dict[str, Any]] = {}
    for record in table.to_dict(orient="records"):
        rel = PurePosixPath(str(record["path"]).replace("\\", "/")).as_posix()
        if rel in rows:
            raise InvalidInput(f"manifest {path} lists {rel!r} twice")
        rows[rel] = {k: _plain(v) for k, v in record.items() if _plain(v) is not None}
    if not rows:
        raise InvalidInput(f"manifest {path} lists no file")
    return Manifest(rows)


def _plain(value: Any) -> Any:
    """A manifest cell as JSON-safe Python (an empty cell is None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


@dataclass(frozen=True)
class LabelRule:
    """Where each imported file's class comes from (one of patterns, variable or manifest)."""

    patterns: Mapping[str, str] = field(default_factory=dict)
    variable: str | None = None
    manifest: Manifest | None = None
    classes: tuple[str, ...] | None = None
    display_names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [bool(self.patterns), self.variable is not None, self.manifest is not None]
        if sum(given) != 1:
            raise InvalidInput("a label rule takes exactly one of: patterns, a variable, a manifest")
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise InvalidInput(f"declared classes repeat a key: {list(self.classes)}")
            named = set(self.patterns.values()) - set(self.classes)
            if named:
                raise InvalidInput(f"patterns name class(es) {sorted(named)} that are not among "
                                   f"the declared classes {list(self.classes)}")

    def class_keys(self, found: Sequence[str]) -> tuple[str, ...]:
        """The dataset's classes: declared, else the patterns' in order, else those found, sorted."""
        if self.classes is not None:
            return tuple(self.classes)
        if self.patterns:
            return tuple(dict.fromkeys(self.patterns.values()))
        return tuple(sorted(set(found)))

    def label(self, rel: str, metadata: Mapping[str, Any]) -> str:
        """The class of the file at ``rel`` (its variables in ``metadata``).

        Raises:
            MatFileError: unlabelled, ambiguous, or a class outside the declared set.
        """
        if self.manifest is not None:
            value = self.manifest.row(rel).get("label")
            where = "its manifest row"
        elif self.variable is not None:
            value = metadata.get(self.variable)
            where = f"variable {self.variable!r}"
        else:
            value = self._by_pattern(rel)
            where = "the label patterns"
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise MatFileError(f"unlabelled: {where} give no class")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise MatFileError(f"{where} hold {value!r}, not a class name")
        key = str(value).strip()
        if self.classes is not None and key not in self.classes:
            raise MatFileError(f"label {key!r} from {where} is not one of the declared classes "
                               f"({', '.join(self.classes)})")
        return key

    def _by_pattern(self, rel: str) -> str:
        matched = {pattern: key for pattern, key in self.patterns.items() if _matches(rel, pattern)}
        keys = set(matched.values())
        if not keys:
            raise MatFileError(f"unlabelled: no label pattern matches ({', '.join(self.patterns)})")
        if len(keys) > 1:
            said = ", ".join(f"{p!r} -> {k}" for p, k in matched.items())
            raise MatFileError(f"ambiguous: patterns of different classes match ({said})")
        return keys.pop()


def _matches(rel: str, pattern: str) -> bool:
    """Glob match on the posix path; a leading ``**/`` also matches at the top folder."""
    if fnmatchcase(rel, pattern):
        return True
    return pattern.startswith("**/") and fnmatchcase(rel, pattern[3:])
