"""``pfd send``, ``pfd status``, ``pfd cancel``: send a job, read it, cancel it."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from actors.cli.common import app, console, emit, load_broker, one_row


@app.command()
def send(
    actor: str,
    payload: str = typer.Option("{}", "--json", help="The payload as a JSON object."),
    wait: bool = typer.Option(False, help="Follow the job with a progress bar until it ends."),
) -> None:
    """Send a message to ACTOR with a JSON payload (validated before it is sent)."""
    from actors.platform.errors import PayloadInvalid

    broker = load_broker()
    try:
        kwargs = json.loads(payload)
        message = broker.get_actor(actor).send(**kwargs)
    except (json.JSONDecodeError, PayloadInvalid) as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    except Exception as exc:
        if type(exc).__name__ == "ActorNotFound":
            console.print(f"[red]unknown actor {actor!r}; known: {', '.join(sorted(broker.actors))}")
            raise typer.Exit(2) from None
        raise
    typer.echo(message.message_id)
    if wait:
        from actors.cli.follow import follow_job

        view = follow_job(message.message_id, label=actor, console=console)
        raise typer.Exit(0 if view.state == "succeeded" else 1)


@app.command()
def status(message_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a job's state, progress, timings and error."""
    from actors.platform.errors import JobNotFound
    from actors.platform.jobs import get_job

    load_broker()
    try:
        view = get_job(message_id)
    except JobNotFound as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    table = Table(show_header=False)
    for key, value in view.to_dict().items():
        table.add_row(key, str(value))
    emit(view.to_dict(), as_json, table)


@app.command()
def cancel(message_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Cancel a job: queued jobs are skipped, running ones stop at their next check."""
    from actors.platform.jobs import request_cancel

    load_broker()
    view = request_cancel(message_id)
    emit({"message_id": message_id, "state": view.state, "cancel_requested": view.cancel_requested}, as_json,
          None if as_json else one_row("cancel requested", view.state))
