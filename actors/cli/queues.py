"""``pfd queues`` and ``pfd dlq``: queue depths and dead-lettered messages."""

from __future__ import annotations

import typer
from rich.table import Table

from actors.cli.common import app, emit, load_broker, one_row

dlq_app = typer.Typer(help="Dead-lettered messages.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command()
def queues(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show each queue's depth, messages held by workers, delayed (retrying) and dead-lettered ones."""
    from actors.platform.queue_depths import queue_depths
    from config.queues import QUEUES

    broker = load_broker()
    depths = queue_depths(broker.client, QUEUES)
    table = Table("queue", "queued", "in flight", "delayed", "dead")
    for depth in depths:
        table.add_row(depth.queue, str(depth.queued), str(depth.in_flight), str(depth.delayed), str(depth.dead))
    emit([d.to_dict() for d in depths], as_json, table)


@dlq_app.command("list")
def dlq_list(
    queue: str | None = typer.Argument(None, help="One queue (default: all)."),
    limit: int = typer.Option(50, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List dead-lettered messages, newest first."""
    from dataclasses import asdict

    from actors.platform.dead_letters import list_dead_letters
    from config.queues import QUEUES

    broker = load_broker()
    letters = [l for q in ([queue] if queue else QUEUES) for l in list_dead_letters(broker.client, q, limit=limit)]
    table = Table("queue", "message id", "actor", "failed at", "reason")
    for letter in letters:
        table.add_row(letter.queue, letter.message_id, letter.actor, f"{letter.failed_at:.0f}", letter.reason)
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
def dlq_purge(queue: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Delete every dead-lettered message of QUEUE."""
    from actors.platform.dead_letters import purge_dead_letters

    broker = load_broker()
    count = purge_dead_letters(broker.client, queue)
    emit({"queue": queue, "purged": count}, as_json, None if as_json else one_row("purged", str(count)))
