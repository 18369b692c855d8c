"""What every ``pfd`` command group shares: the Typer app, the console, the broker, output."""

from __future__ import annotations

import json
from pathlib import Path

import dramatiq
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["PROJECT_ROOT", "app", "console", "emit", "load_broker", "one_row"]

app = typer.Typer(help="PFD Actors: background work for bearing fault diagnosis.", no_args_is_help=True)
console = Console()

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def load_broker() -> dramatiq.Broker:
    """Set up the broker with every actor loaded (imported only by commands that need it)."""
    import actors.app

    return actors.app.broker


def emit(data: object, as_json: bool, table: Table | Text | None = None) -> None:
    """Print ``data`` as JSON (``--json``, or when there is no table), else the table (or line)."""
    if as_json or table is None:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        # A line of text is never folded at the terminal's width: ids in it stay whole.
        console.print(table, soft_wrap=isinstance(table, Text))


def one_row(label: str, value: str) -> Table:
    """A one-row table: a label and its value."""
    table = Table(show_header=False)
    table.add_row(label, value)
    return table
