"""Plan and apply artifact cleanup: temp files, orphaned artifacts, expired run folders.

The plan is computed first and applied as listed, so a dry run reports exactly what the
real run deletes (the same plan, not a re-scan with another clock). ``plan_object_cleanup``
plans the same for a shared store's listing (orphans and expired runs; a store has no
temporary files).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UnsafePath

__all__ = ["Candidate", "apply_cleanup", "plan_cleanup", "plan_object_cleanup"]

# Names that only exist while a write is in progress (see pipeline.artifacts and writers).
_TEMP_SUFFIXES = (".partial", ".staging.h5", ".tmp")


@dataclass(frozen=True)
class Candidate:
    """One file or folder to delete, and why."""

    path: str
    reason: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate as JSON-safe data."""
        return asdict(self)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _age_s(path: Path, now: float) -> float:
    return now - path.stat().st_mtime


def _temp_files(root: Path, now: float, max_age_s: float) -> Iterator[Candidate]:
    for path in root.rglob("*"):
        if path.name.endswith(_TEMP_SUFFIXES) and _age_s(path, now) > max_age_s:
            yield Candidate(str(path), f"temporary file older than {max_age_s:g} s", _size(path))


def _record_id(name: str) -> str:
    """The record id an artifact's name under its folder holds (``<id>.h5``, ``<id>_mat``, ``<id>``)."""
    return name.removesuffix(".h5").removesuffix("_mat")


def _no_record(record_id: str, folder: str) -> str:
    return f"no record {record_id!r} in {folder}"


def _past_retention(retention_s: float) -> str:
    return f"older than the {retention_s / 86400:g}-day retention"


def _orphans(folder: Path, known: set[str], now: float, min_age_s: float) -> Iterator[Candidate]:
    """Artifacts named by a record id (``<id>.h5``, ``<id>_mat``, ``<id>/``) with no record."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.endswith(_TEMP_SUFFIXES):
            continue
        record_id = _record_id(path.name)
        if record_id not in known and _age_s(path, now) > min_age_s:
            yield Candidate(str(path), _no_record(record_id, folder.name), _size(path))


def _expired(folder: Path, now: float, retention_s: float) -> Iterator[Candidate]:
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _age_s(path, now) > retention_s:
            yield Candidate(str(path), _past_retention(retention_s), _size(path))


def plan_cleanup(
    root: str | Path,
    *,
    known_ids: Mapping[str, set[str]],
    expiring: tuple[str, ...] = (),
    temp_max_age_s: float,
    retention_s: float,
    now: float | None = None,
) -> list[Candidate]:
    """List what to delete under ``root``.

    ``known_ids`` maps an artifact folder (``datasets``, ``experiments``) to the ids that
    still have a record: anything else there is an orphan. Folders in ``expiring`` keep
    entries for ``retention_s``. Orphans younger than ``temp_max_age_s`` are kept: their
    record may be in the middle of being written.
    """
    root = Path(root)
    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    planned: dict[str, Candidate] = {}
    sources = [_temp_files(root, now, temp_max_age_s)]
    sources += [_orphans(root / folder, ids, now, temp_max_age_s) for folder, ids in known_ids.items()]
    sources += [_expired(root / folder, now, retention_s) for folder in expiring]
    for source in sources:
        for candidate in source:
            planned.setdefault(candidate.path, candidate)
    return sorted(planned.values(), key=lambda c: c.path)


def plan_object_cleanup(
    objects: Iterable[tuple[str, int, float]],
    *,
    known_ids: Mapping[str, set[str]],
    expiring: tuple[str, ...] = (),
    min_age_s: float,
    retention_s: float,
    now: float | None = None,
) -> list[Candidate]:
    """List the objects of a store to delete, from its listing of ``(key, bytes, time written)``.

    As ``plan_cleanup`` does for a folder, by key: ``<folder>/<id>...`` under a folder of
    ``known_ids`` whose id has no record (written more than ``min_age_s`` ago: its record may be
    in the middle of being written), and objects under an ``expiring`` folder written more
    than ``retention_s`` ago. A candidate's ``path`` is its key.
    """
    now = time.time() if now is None else now
    planned = []
    for key, size, modified in objects:
        folder, _, rest = key.partition("/")
        age = now - modified
        if folder in known_ids and rest and (record_id := _record_id(rest.split("/")[0])) not in known_ids[folder]:
            if age > min_age_s:
                planned.append(Candidate(key, _no_record(record_id, folder), size))
        elif folder in expiring and age > retention_s:
            planned.append(Candidate(key, _past_retention(retention_s), size))
    return sorted(planned, key=lambda c: c.path)


def apply_cleanup(root: str | Path, candidates: list[Candidate]) -> list[Candidate]:
    """Delete the planned candidates (only under ``root``); return those deleted."""
    root = Path(root).resolve()
    deleted = []
    for candidate in candidates:
        path = Path(candidate.path)
        if not path.resolve().is_relative_to(root):
            raise UnsafePath(f"refusing to delete {path}: outside the artifact root {root}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        deleted.append(candidate)
    return deleted
