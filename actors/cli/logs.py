"""``pfd logs ID``: the log lines of one job, one tree or one domain record, across processes.

Reads JSON log lines from files or standard input, as the workers wrote them or as a
Procfile runner prefixed them (``12:00:01 cpu_processing.1 | {...}``), and keeps the lines
that name ID in any id field: a job's own lines, every job of its tree (``root_id``), a
fan-out's members, or every job that worked on a dataset, experiment, campaign, ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from actors.cli.common import app, console
from actors.platform.log_lines import matching_lines, render_line


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
                typer.echo(raw if as_json else render_line(record))
    finally:
        for stream in streams:
            if stream is not sys.stdin:
                stream.close()
