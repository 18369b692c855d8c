"""``pfd logs ID``: the log lines of one job, one tree or one domain record, across processes.

Reads JSON log lines from files or standard input, as the workers wrote them or as a
Procfile runner prefixed them (``12:00:01 cpu_processing.1 | {...}``), and keeps the lines
that name ID in any id field: a job's own lines, every job of its tree (``root_id``), a
fan-out's members, or every job that worked on a dataset, experiment, campaign, ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from actors.cli.common import app, console

__all__ = ["matching_lines"]


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


def _render(record: dict[str, Any]) -> str:
    head = f"{record.get('timestamp', '')[11:23]} {record.get('level', ''):7} {record.get('event', '')}"
    skip = {"timestamp", "level", "event"}
    rest = " ".join(f"{key}={value}" for key, value in record.items() if key not in skip)
    return f"{head}  {rest}"


@app.command()
def logs(
    any_id: str = typer.Argument(..., metavar="ID", help="A message id, root id, fan-out id or domain record id."),
    files: list[Path] = typer.Argument(None, help="Log files (default: standard input)."),
    tree: bool = typer.Option(True, help="Also the lines of every job in the same tree (needs Redis and the database)."),
    as_json: bool = typer.Option(False, "--json", help="Print the matching lines as they are."),
) -> None:
    """Show the log lines of one piece of work, from files or a Procfile runner's output on stdin."""
    ids = {any_id}
    if tree:
        from actors.cli.common import load_broker
        from actors.platform.errors import JobNotFound
        from actors.platform.jobs import get_tree

        load_broker()
        try:
            ids.add(get_tree(any_id).root_id)
        except JobNotFound:
            console.print(f"[yellow]no job knows {any_id!r}: showing the lines that name it", highlight=False)
    streams = [path.open(encoding="utf-8", errors="replace") for path in files] if files else [sys.stdin]
    try:
        for stream in streams:
            for raw, record in matching_lines(stream, ids):
                typer.echo(raw if as_json else _render(record))
    finally:
        for stream in streams:
            if stream is not sys.stdin:
                stream.close()
