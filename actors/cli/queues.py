"""``pfd queues`` and ``pfd dlq``: queue depths and dead-lettered messages."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from actors.cli.common import app, emit, load_broker, one_row

dlq_app = typer.Typer(help="Dead-lettered messages.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command()
def queues(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show each queue's depth (queued, held by workers, delayed for a retry, dead) and its live workers."""
    from actors.platform.operations import queue_overview

    rows = queue_overview(load_broker())
    table = Table("queue", "queued", "in flight", "delayed", "dead", "live workers")
    for row in rows:
        alive = row["workers"]
        table.add_row(row["queue"], str(row["queued"]), str(row["in_flight"]), str(row["delayed"]), str(row["dead"]),
                      str(len(alive)) if alive else "[yellow]none")
    emit(rows, as_json, table)


@dlq_app.command("list")
def dlq_list(
    queue: str | None = typer.Argument(None, help="One queue (default: all)."),
    limit: int = typer.Option(50, min=1),
    wide: bool = typer.Option(False, help="ISO times."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List dead-lettered messages, newest first, with why each failed."""
    from dataclasses import asdict

    from actors.cli.display import human_time, id_column
    from actors.platform.operations import dead_letters_explained

    letters = dead_letters_explained(load_broker(), queue, limit=limit)
    table = Table("queue", id_column("message id"), "actor", "failed", "reason", box=box.SIMPLE_HEAD)
    for letter in letters:
        table.add_row(letter.queue, letter.message_id, letter.actor, human_time(letter.failed_at, wide=wide),
                      letter.reason)
    emit([asdict(l) for l in letters], as_json, table)


@dlq_app.command("retry")
def dlq_retry(
    queue: str,
    message_ids: list[str] | None = typer.Argument(None, help="Only these (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send dead-lettered messages of QUEUE again; their jobs go back to queued."""
    from actors.platform.dead_letters import requeue_dead_letters

    broker = load_broker()
    requeued = requeue_dead_letters(broker, queue, set(message_ids) if message_ids else None)
    emit({"queue": queue, "requeued": requeued}, as_json, None if as_json else one_row("requeued", str(len(requeued))))


@dlq_app.command("purge")
def dlq_purge(
    queue: str,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (scripts)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Delete every dead-lettered message of QUEUE (asks first, unless --yes)."""
    from actors.platform.dead_letters import purge_dead_letters
    from actors.platform.queue_depths import queue_depths

    broker = load_broker()
    waiting = queue_depths(broker.client, (queue,))[0].dead
    if waiting and not yes:
        typer.confirm(f"delete {waiting} dead-lettered message(s) of {queue!r} for good?", abort=True)
    count = purge_dead_letters(broker.client, queue)
    emit({"queue": queue, "purged": count}, as_json, None if as_json else one_row("purged", str(count)))
