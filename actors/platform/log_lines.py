"""JSON log lines of one piece of work, found by the ids they carry (``pfd logs``, the dashboard).

Lines are read as the workers wrote them or as a Procfile runner prefixed them
(``12:00:01 cpu_processing.1 | {...}``); a line belongs to the work when any of its id
fields (``*_id``) names one of the ids asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["matching_lines", "render_line", "tail_lines"]


def _records(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each JSON object in ``lines`` (after any runner's prefix), with the line it came from."""
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict):
            yield line[start:].rstrip("\n"), record


def matching_lines(lines: Iterable[str], ids: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The JSON log records among ``lines`` whose id fields (``*_id``) name one of ``ids``."""
    for raw, record in _records(lines):
        if any(key.endswith("_id") and value in ids for key, value in record.items()):
            yield raw, record


def render_line(record: dict[str, Any]) -> str:
    """One log record as a readable line: time, level, event, then its fields."""
    head = f"{record.get('timestamp', '')[11:23]} {record.get('level', ''):7} {record.get('event', '')}"
    skip = {"timestamp", "level", "event"}
    rest = " ".join(f"{key}={value}" for key, value in record.items() if key not in skip)
    return f"{head}  {rest}"


def tail_lines(path: Path, *, max_bytes: int) -> list[str]:
    """The lines of the last ``max_bytes`` of a file (the first, likely cut, dropped); [] when unreadable."""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(max(size - max_bytes, 0))
            data = stream.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > max_bytes else lines
