"""The ``pfd`` command: run the demo, send and follow jobs, inspect queues and dead letters."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="PFD Actors: background work for bearing fault diagnosis.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered messages.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
maintenance_app = typer.Typer(help="Periodic maintenance, by hand.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(db_app, name="db")
console = Console()

ROOT = Path(__file__).resolve().parents[1]


def _broker():  # type: ignore[no-untyped-def]
    import actors.app

    return actors.app.broker


def _emit(data: object, as_json: bool, table: Table | None = None) -> None:
    if as_json or table is None:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(table)


@app.command()
def demo(records_per_class: int = typer.Option(4, min=1, help="Records generated per class.")) -> None:
    """Start the workers, generate a dataset, import its MAT export, print a summary."""
    from actors.demo import run_demo

    raise typer.Exit(run_demo(records_per_class, console))


@app.command()
def workers(show: bool = typer.Option(False, help="Only print what the Procfile runs.")) -> None:
    """Run the Procfile (one worker per queue + the scheduler), or show its lines."""
    procfile = ROOT / "Procfile"
    if show:
        typer.echo(procfile.read_text())
        return
    honcho = Path(sys.executable).parent / "honcho"
    os.execv(str(honcho), [str(honcho), "start", "-f", str(procfile)])


@app.command()
def send(
    actor: str,
    payload: str = typer.Option("{}", "--json", help="The payload as a JSON object."),
    wait: bool = typer.Option(False, help="Follow the job with a progress bar until it ends."),
) -> None:
    """Send a message to ACTOR with a JSON payload (validated before it is sent)."""
    from actors.errors import PayloadInvalid

    broker = _broker()
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
        from actors.follow import follow_job

        view = follow_job(message.message_id, label=actor, console=console)
        raise typer.Exit(0 if view.state == "succeeded" else 1)


@app.command()
def status(message_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a job's state, progress, timings and error."""
    from actors.errors import JobNotFound
    from actors.jobs import get_job

    _broker()
    try:
        view = get_job(message_id)
    except JobNotFound as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    table = Table(show_header=False)
    for key, value in view.to_dict().items():
        table.add_row(key, str(value))
    _emit(view.to_dict(), as_json, table)


@app.command()
def cancel(message_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Cancel a job: queued jobs are skipped, running ones stop at their next check."""
    from actors.jobs import request_cancel

    _broker()
    view = request_cancel(message_id)
    _emit({"message_id": message_id, "state": view.state, "cancel_requested": view.cancel_requested}, as_json,
          None if as_json else _one_row("cancel requested", view.state))


def _one_row(label: str, value: str) -> Table:
    table = Table(show_header=False)
    table.add_row(label, value)
    return table


@app.command()
def queues(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show each queue's depth, messages held by workers, delayed (retrying) and dead-lettered ones."""
    from actors.queues import queue_depths
    from config.queues import QUEUES

    broker = _broker()
    depths = queue_depths(broker.client, QUEUES)
    table = Table("queue", "queued", "in flight", "delayed", "dead")
    for depth in depths:
        table.add_row(depth.queue, str(depth.queued), str(depth.in_flight), str(depth.delayed), str(depth.dead))
    _emit([d.to_dict() for d in depths], as_json, table)


@dlq_app.command("list")
def dlq_list(
    queue: str | None = typer.Argument(None, help="One queue (default: all)."),
    limit: int = typer.Option(50, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List dead-lettered messages, newest first."""
    from dataclasses import asdict

    from actors.deadletters import list_dead_letters
    from config.queues import QUEUES

    broker = _broker()
    letters = [l for q in ([queue] if queue else QUEUES) for l in list_dead_letters(broker.client, q, limit=limit)]
    table = Table("queue", "message id", "actor", "failed at", "reason")
    for letter in letters:
        table.add_row(letter.queue, letter.message_id, letter.actor, f"{letter.failed_at:.0f}", letter.reason)
    _emit([asdict(l) for l in letters], as_json, table)


@app.command("record-jobs")
def record_jobs() -> None:
    """Run the job recorder: write job states from Redis to the database (Procfile line)."""
    import signal
    import threading

    from actors.jobs import job_store
    from actors.recorder import run_recorder
    from config.settings import get_settings

    _broker()
    settings = get_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_recorder(job_store(), interval_s=settings.job_flush_interval_s, batch=settings.job_flush_batch,
                 settle_s=settings.job_record_settle_s, stop=stop)


@app.command()
def metrics(
    host: str | None = typer.Option(None, help="Address to bind (default PFD_METRICS_HOST)."),
    port: int | None = typer.Option(None, help="Port (default PFD_METRICS_PORT; 0: any free port)."),
    cluster: bool = typer.Option(True, help="Also the Redis-wide series (serve them from one host)."),
) -> None:
    """Serve Prometheus metrics: queue depths, job outcomes, this host's worker metrics (Procfile line)."""
    import signal
    import threading

    import structlog

    from actors.metrics import serve_metrics
    from config.broker import redis_client
    from config.logging import configure_logging
    from config.queues import QUEUES
    from config.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    server, _ = serve_metrics(
        host or settings.metrics_host, settings.metrics_port if port is None else port,
        redis=redis_client(settings.redis_url), queues=QUEUES, worker_metrics_dir=settings.metrics_dir,
        cluster=cluster,
    )
    bound_host, bound_port = server.server_address[:2]
    log = structlog.get_logger("pfd.metrics")
    log.info("metrics.serving", url=f"http://{bound_host}:{bound_port}/metrics", cluster=cluster,
             worker_metrics_dir=str(settings.metrics_dir))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    log.info("metrics.stopped")


@dlq_app.command("retry")
def dlq_retry(
    queue: str,
    message_ids: list[str] | None = typer.Argument(None, help="Only these (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send dead-lettered messages of QUEUE again; their jobs go back to queued."""
    from actors.deadletters import requeue_dead_letters

    broker = _broker()
    requeued = requeue_dead_letters(broker, queue, set(message_ids) if message_ids else None)
    _emit({"queue": queue, "requeued": requeued}, as_json, None if as_json else _one_row("requeued", str(len(requeued))))


@dlq_app.command("purge")
def dlq_purge(queue: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Delete every dead-lettered message of QUEUE."""
    from actors.deadletters import purge_dead_letters

    broker = _broker()
    count = purge_dead_letters(broker.client, queue)
    _emit({"queue": queue, "purged": count}, as_json, None if as_json else _one_row("purged", str(count)))


@maintenance_app.command("run")
def maintenance_run(
    name: str = typer.Argument(..., help="A periodic actor, e.g. reap_stale_jobs."),
    payload: str = typer.Option("{}", "--json", help="The payload as a JSON object (e.g. dry_run)."),
) -> None:
    """Run a periodic maintenance actor now, and wait for its result."""
    from actors.follow import follow_job

    broker = _broker()
    periodic = sorted(n for n, a in broker.actors.items() if "periodic" in a.options)
    if name not in periodic:
        console.print(f"[red]{name!r} is not a periodic actor; periodic actors: {', '.join(periodic)}")
        raise typer.Exit(2)
    message = broker.get_actor(name).send(**json.loads(payload))
    view = follow_job(message.message_id, label=name, console=console)
    typer.echo(json.dumps(view.result, indent=2, default=str))
    raise typer.Exit(0 if view.state == "succeeded" else 1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest migration (alembic upgrade head)."""
    from actors.store.db import migrate
    from config.settings import get_settings

    migrate(get_settings().database_url)
    console.print(f"database {get_settings().masked('database_url')} is at head")
