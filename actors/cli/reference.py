"""``pfd actors``, ``pfd schema ACTOR``, and the actor reference docs/actors.md generated from the schemas.

``pfd reference`` rewrites docs/actors.md; ``pfd reference --check`` exits 1 when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from actors.cli.common import PROJECT_ROOT, app, console, emit, load_broker

__all__ = ["REFERENCE_PATH", "actor_schema", "render_reference"]

REFERENCE_PATH = PROJECT_ROOT / "docs" / "actors.md"


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g} {unit}"
    return f"{value:g} s"


def _value(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _facts(row: dict[str, Any]) -> str:
    parts = []
    if row["allowed"]:
        parts.append("one of " + ", ".join(str(v) for v in row["allowed"]))
    parts += row["bounds"]
    if row["names"]:
        parts.append(f"an existing {row['names']} (checked at send)")
    return "; ".join(parts)


def actor_schema(name: str) -> dict[str, Any]:
    """An actor's catalog entry with its payload fields (``actors.platform.catalog.actor_schema``)."""
    from actors.platform.catalog import actor_schema as schema_of

    return schema_of(load_broker(), name)


@app.command("actors")
def list_actors(as_json: bool = typer.Option(False, "--json")) -> None:
    """List every actor: its queue, time limit, retries, backoff and what it does."""
    from actors.platform.catalog import actor_catalog

    rows = actor_catalog(load_broker())
    table = Table("actor", "queue", "time limit", "retries", "backoff", "what it does")
    for row in rows:
        table.add_row(row["actor"], row["queue"], _seconds(row["time_limit_s"]), str(row["max_retries"]),
                      f"{_seconds(row['min_backoff_s'])} – {_seconds(row['max_backoff_s'])}", row["summary"])
    emit(rows, as_json, table)


@app.command()
def schema(actor: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what ACTOR's payload takes: each field's type, default, allowed values and description."""
    try:
        view = actor_schema(actor)
    except KeyError:
        console.print(f"[red]unknown actor {actor!r}; known: {', '.join(sorted(load_broker().actors))}")
        raise typer.Exit(2) from None
    if as_json:
        emit(view, True)
        return
    console.print(f"[bold]{actor}[/] ({view['queue']}): {view['summary']}")
    for title, rows in {"payload": view["fields"], **{f"{k} (object)": v for k, v in view["options"].items()}}.items():
        table = Table("field", "type", "default", "allowed / limits", "description", title=title, title_justify="left")
        for row in rows:
            default = "required" if row["required"] else _value(row["default"])
            table.add_row(row["name"], row["type"], default, _facts(row), row["description"])
        console.print(table)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| field | type | default | allowed / limits | description |", "|---|---|---|---|---|"]
    for row in rows:
        default = "**required**" if row["required"] else f"`{_value(row['default'])}`" if row["default"] is not None else ""
        lines.append(f"| `{row['name']}` | {_cell(row['type'])} | {_cell(default)} | {_cell(_facts(row))} | "
                     f"{_cell(row['description'])} |")
    return lines


def render_reference() -> str:
    """The actor reference as Markdown: every actor's queue, limits, summary and payload tables."""
    from actors.platform.catalog import actor_catalog

    broker = load_broker()
    lines = ["# Actor reference", "",
             ("Generated from the actors and their payload schemas by `pfd reference`; "
             "a test fails when it is stale. `pfd actors` and `pfd schema ACTOR` show the same from a shell."),
             ("Every payload is checked when it is sent (`PayloadInvalid` names the field) and again by the worker; "
             "ids marked *an existing dataset/experiment* are looked up at send when the producer can read the database."),
             "", "| actor | queue | time limit | retries | backoff | what it does |", "|---|---|---|---|---|---|"]
    from actors.platform.actor_modules import ACTOR_MODULES

    # The project's actors only: a process may have declared others (the tests' probes).
    catalog = [row for row in actor_catalog(broker) if row["module"].startswith(ACTOR_MODULES)]
    for row in catalog:
        lines.append(f"| [`{row['actor']}`](#{row['actor']}) | {row['queue']} | {_seconds(row['time_limit_s'])} | "
                     f"{row['max_retries']} | {_seconds(row['min_backoff_s'])} – {_seconds(row['max_backoff_s'])} | "
                     f"{_cell(row['summary'])} |")
    for row in catalog:
        view = actor_schema(row["actor"])
        lines += ["", f"## {row['actor']}", "", f"`{row['module']}`, queue `{row['queue']}`"
                  + (f", periodic `{row['periodic']}`" if row["periodic"] else "") + f". {row['summary']}", ""]
        lines += _markdown_table(view["fields"]) if view["fields"] else ["No payload."]
        for field, rows in view["options"].items():
            lines += ["", f"`{field}` takes:", "", *_markdown_table(rows)]
    return "\n".join(lines) + "\n"


@app.command()
def reference(check: bool = typer.Option(False, "--check", help="Only say whether docs/actors.md is up to date.")) -> None:
    """Write the actor reference docs/actors.md from the schemas (``--check``: exit 1 when it is stale)."""
    text = render_reference()
    if check:
        stale = not REFERENCE_PATH.is_file() or REFERENCE_PATH.read_text() != text
        typer.echo(f"{REFERENCE_PATH} is {'stale: run pfd reference' if stale else 'up to date'}")
        raise typer.Exit(1 if stale else 0)
    REFERENCE_PATH.write_text(text)
    typer.echo(f"wrote {REFERENCE_PATH}")
