"""``pfd send``, ``status``, ``follow``, ``cancel`` and ``jobs``: send work, read it, stop it, list it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import typer
from rich.text import Text

from actors.cli.common import app, console, emit, load_broker


def _follow_and_exit(any_id: str, label: str, timeout_s: float) -> None:
    """Follow a tree to its end, print its outcome, and exit 0 only if it succeeded."""
    from actors.cli.follow import follow_tree, print_outcome

    try:
        tree = follow_tree(any_id, label=label, console=console, timeout_s=timeout_s)
    except TimeoutError as exc:
        console.print(f"[yellow]{exc}; it goes on: `pfd follow {any_id}` to follow it again")
        raise typer.Exit(1) from None
    print_outcome(tree, console)
    raise typer.Exit(0 if tree.state == "succeeded" else 1)


def _tree_or_exit(any_id: str):  # type: ignore[no-untyped-def]
    """The tree ``any_id`` names, or a one-line error and exit 1 when nothing has that id."""
    from actors.platform.errors import JobNotFound
    from actors.platform.jobs import get_tree

    load_broker()
    try:
        return get_tree(any_id)
    except JobNotFound as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None


@app.command()
def send(
    actor: str,
    payload: str = typer.Option("{}", "--json", help="The payload as a JSON object."),
    wait: bool = typer.Option(False, help="Follow the job and all it launches until they end."),
    timeout_s: float = typer.Option(3600.0, "--timeout", help="With --wait: give up after this many seconds."),
    schema: bool = typer.Option(False, "--schema", help="Send nothing: show what ACTOR's payload takes."),
) -> None:
    """Send a message to ACTOR with a JSON payload (validated before it is sent)."""
    from dramatiq.errors import ActorNotFound

    from actors.platform.errors import PayloadInvalid
    from actors.platform.operations import send_job

    if schema:
        from actors.cli.reference import schema as show_schema

        show_schema(actor, as_json=False)
        return
    broker = load_broker()
    try:
        message = send_job(broker, actor, json.loads(payload))
    except (json.JSONDecodeError, PayloadInvalid) as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    except ActorNotFound:
        console.print(f"[red]unknown actor {actor!r}; known: {', '.join(sorted(broker.actors))}")
        raise typer.Exit(2) from None
    typer.echo(message.message_id)
    if wait:
        _follow_and_exit(message.message_id, actor, timeout_s)


@app.command()
def status(
    any_id: str = typer.Argument(..., metavar="ID", help="A message id, fan-out id, or dataset/experiment/campaign/deployment/analysis id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the tree of work that ID belongs to: each job's state, progress, duration and error.

    With --json: ``job`` (the job ID names, or the tree's root for another kind of id) and
    ``tree`` (its state, progress, counts, first failure and every node).
    """
    from actors.cli.display import job_summary, tree_view

    tree = _tree_or_exit(any_id)
    asked = next((node for node in tree.nodes if node.message_id == any_id), tree.root)
    if as_json:
        emit({"job": asked.to_dict(), "tree": tree.to_dict()}, True)
        return
    console.print(tree_view(tree))
    console.print(job_summary(asked), soft_wrap=True, highlight=False)


@app.command()
def follow(
    any_id: str = typer.Argument(..., metavar="ID", help="Any id that names a piece of work (see `pfd status`)."),
    timeout_s: float = typer.Option(3600.0, "--timeout", help="Give up after this many seconds."),
) -> None:
    """Follow a piece of work with live bars until all of it ends; print its error or result."""
    _follow_and_exit(any_id, _tree_or_exit(any_id).root.actor, timeout_s)


@app.command()
def cancel(message_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Cancel a job: queued jobs are skipped, running ones stop at their next check.

    Exits 1 when there is no such job, or when it had already ended (nothing changes then).
    """
    from actors.platform.errors import JobNotFound
    from actors.platform.operations import cancel_unless_final

    load_broker()
    try:
        outcome = cancel_unless_final(message_id)
    except JobNotFound as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    view = outcome.job
    if not outcome.requested:
        emit({"message_id": message_id, "state": view.state, "cancel_requested": False,
              "note": "already final: nothing changed"}, as_json,
             None if as_json else Text(f"job {message_id} had already ended ({view.state}): nothing changed"))
        raise typer.Exit(1)
    emit({"message_id": message_id, "state": view.state, "cancel_requested": view.cancel_requested}, as_json,
         None if as_json else Text(f"cancel requested for job {message_id} ({view.state}): "
                                    "skipped if queued, stopped at its next check if running"))


def _since(value: str | None) -> datetime | None:
    """``30m``, ``2h``, ``1d`` or an ISO time, as a UTC datetime."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(value[:-1]) * units[value[-1]])
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a duration (30m, 2h, 1d) nor an ISO time") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@app.command("jobs")
def list_jobs_command(
    state: str | None = typer.Option(None, help="Only jobs in this state (queued, running, failed, ...)."),
    actor: str | None = typer.Option(None, help="Only this actor's jobs."),
    queue: str | None = typer.Option(None, help="Only this queue's jobs."),
    root: str | None = typer.Option(None, help="Only the jobs of this tree (its root's message id)."),
    since: str | None = typer.Option(None, help="Only jobs sent since: 30m, 2h, 1d, or an ISO time."),
    limit: int = typer.Option(50, min=1, max=10_000, help="Page size."),
    page: int = typer.Option(1, min=1, help="Page number, newest first."),
    wide: bool = typer.Option(False, help="ISO times and root ids."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List recorded jobs, newest first, with filters and paging."""
    from actors.cli.display import job_table
    from actors.platform.jobs import job_store
    from actors.store.listings import list_jobs

    load_broker()
    jobs = list_jobs(job_store().database, state=state, actor=actor, queue=queue, root_id=root,
                     since=_since(since), limit=limit, offset=(page - 1) * limit)
    emit([job.to_dict() for job in jobs], as_json, job_table(jobs, wide=wide))
