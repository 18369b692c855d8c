"""``pfd demo``, the main job end to end: workers from the Procfile, a generated dataset, its MAT import."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import typer
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Console
from rich.table import Table

from actors.cli.common import PROJECT_ROOT, app, console
from actors.cli.follow import follow_tree
from actors.store.db import migrate
from actors.store.jobs import JobView
from config.settings import Settings, get_settings

__all__ = ["run_demo"]



def _redis_answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisConnectionError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _private_redis(stack: contextlib.ExitStack, settings: Settings, console: Console) -> str | None:
    """Start a throw-away redis-server on a free port, or return None if there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stack.callback(_terminate, process)
    url = f"redis://127.0.0.1:{port}/0"
    if not _wait_for(lambda: _redis_answers(url), 10):
        raise RuntimeError(f"the private redis-server on port {port} did not answer")
    console.print(f"[yellow]No Redis answered at {settings.masked('redis_url')}; started a private one at {url}.")
    return url


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _start_procfile(stack: contextlib.ExitStack, settings: Settings, console: Console) -> Path:
    dashboard_port = settings.dashboard_port if _port_free(settings.dashboard_host, settings.dashboard_port) else _free_port()
    log_path = settings.var_dir / "logs" / "workers.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "PFD_REDIS_URL": settings.redis_url, "PFD_LOG_JSON": "1",
        # Any free port: a demo must not fail because something else serves on 9191.
        "PFD_METRICS_PORT": os.environ.get("PFD_METRICS_PORT", "0"),
        # The dashboard's port must be known to be printed: the configured one if it is free.
        "PFD_DASHBOARD_PORT": str(dashboard_port),
        # Job pages show their lines from the file this runner's output goes to.
        "PFD_DASHBOARD_LOG_FILES": json.dumps([str(log_path)]),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    demo_password = None
    if not settings.dashboard_users:
        # Nobody could sign in: a one-off operator for this demo run, its password printed once.
        from argon2 import PasswordHasher

        demo_password = secrets.token_urlsafe(12)
        env["PFD_DASHBOARD_USERS"] = json.dumps(
            {"demo": {"role": "operator", "password_hash": PasswordHasher().hash(demo_password)}})
    log = stack.enter_context(open(log_path, "ab"))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "start", "-f", str(PROJECT_ROOT / "Procfile")],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    stack.callback(_terminate, process)
    console.print(f"Started the Procfile (4 queue workers, periodiq, the recorder, metrics, the dashboard); logs in {log_path}")
    sign_in = (f"sign in as demo / {demo_password}" if demo_password
               else "sign in as a user of PFD_DASHBOARD_USERS")
    console.print(f"Dashboard: http://{settings.dashboard_host}:{dashboard_port}/ until the demo ends ({sign_in})",
                  soft_wrap=True)
    return log_path


def _wait_for_workers(queues: tuple[str, ...], console: Console, timeout_s: float = 120.0) -> None:
    """Wait until each of ``queues`` has a live worker (its first heartbeat), so the demo's
    jobs are not reported as waiting for a worker that is still starting."""
    from actors.platform.jobs import job_store

    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the workers to start"):
        while not all(job_store().live_workers().get(queue) for queue in queues):
            if time.monotonic() > deadline:
                console.print(f"[yellow]no worker answered within {timeout_s:g} s: see the workers' log")
                return
            time.sleep(0.5)


def _start_stub_worker(stack: contextlib.ExitStack, settings: Settings, console: Console) -> None:
    import fakeredis

    from actors.platform.actor_modules import load_actors
    from actors.platform.broker.assembly import setup_broker

    console.print(
        "[bold yellow]No Redis and no redis-server binary: running every queue's worker in this "
        "one process on Dramatiq's StubBroker (job state in an in-memory Redis). Queue isolation, "
        "redelivery and the Procfile are NOT exercised in this mode."
    )
    broker = setup_broker(settings, stub=True, redis=fakeredis.FakeRedis())
    load_actors()
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=4)
    worker.start()
    stack.callback(worker.stop)


def run_demo(records_per_class: int = 4, console: Console | None = None) -> int:
    """Run the main job and print a summary; return a process exit code."""
    console = console or Console()
    settings = get_settings()
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url if _redis_answers(settings.redis_url) else _private_redis(stack, settings, console)
        if redis_url is not None:
            settings = settings.model_copy(update={"redis_url": redis_url})
        migrate(settings.database_url)
        if redis_url is None:
            _start_stub_worker(stack, settings, console)
        else:
            from actors.platform.actor_modules import load_actors
            from actors.platform.broker.assembly import setup_broker

            setup_broker(settings)
            load_actors()
            _start_procfile(stack, settings, console)
            _wait_for_workers(("cpu_processing",), console)

        from actors.datasets import generate_dataset, import_mat_dataset

        started = time.monotonic()
        generated_message = generate_dataset.send(
            name="demo", records_per_class=records_per_class, output_format="both", seed=7,
        )
        generated = follow_tree(generated_message.message_id, label="generate_dataset", console=console).root
        views = [generated]
        if generated.state == "succeeded" and generated.result:
            imported_message = import_mat_dataset.send(name="demo-mat-import", paths=[generated.result["mat_dir"]])
            views.append(follow_tree(imported_message.message_id, label="import_mat_dataset", console=console).root)
        _print_summary(console, views, time.monotonic() - started)
        return 0 if all(v.state == "succeeded" for v in views) else 1


def _print_summary(console: Console, views: list[JobView], elapsed_s: float) -> None:
    jobs = Table(title=f"Jobs ({elapsed_s:.1f} s in all)")
    for column in ("actor", "state", "attempts", "duration", "records"):
        jobs.add_column(column)
    for view in views:
        jobs.add_row(
            view.actor, view.state, str(view.attempts), f"{(view.duration_ms or 0) / 1000:.1f} s",
            str((view.result or {}).get("n_records", "-")),
        )
    console.print(jobs)
    counts: dict[str, list[str]] = {}
    for view in views:
        result = view.result or {}
        if view.error_message:
            console.print(f"[red]{view.actor} failed: {view.error_message}")
        if result:
            console.print(f"{view.actor}: dataset [bold]{result['dataset_id']}[/] -> {result.get('path') or result.get('mat_dir')}")
            for key, count in (result.get("class_counts") or {}).items():
                counts.setdefault(key, []).append(str(count))
    if counts:
        table = Table(title="Records per class")
        table.add_column("class")
        for view in views:
            table.add_column(view.actor, justify="right")
        for key, values in counts.items():
            table.add_row(key, *values)
        console.print(table)


@app.command()
def demo(records_per_class: int = typer.Option(4, min=1, help="Records generated per class.")) -> None:
    """Start the workers, generate a dataset, import its MAT export, print a summary."""
    raise typer.Exit(run_demo(records_per_class, console))
