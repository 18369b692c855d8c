"""``pfd workers``, ``worker``, ``scheduler``, ``record-jobs``, ``metrics``: the long-running processes of the Procfile."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from actors.cli.common import PROJECT_ROOT, app, load_broker
from actors.platform.signals import stop_on_signals

# What each kind of host runs (Procfile process names). Every host serves its own metrics;
# exactly one host runs the scheduler (periodiq has no lock), so only ``control`` has it.
HOST_ROLES: dict[str, tuple[str, ...]] = {
    "training": ("gpu_training", "metrics"),
    "cpu": ("cpu_processing", "metrics"),
    "control": ("high_priority", "notifications", "scheduler", "recorder", "metrics", "dashboard"),
}


@app.command()
def workers(
    show: bool = typer.Option(False, help="Only print what the Procfile runs."),
    role: list[str] = typer.Option(  # noqa: B008  (typer reads its options from defaults)
        [], help=f"Run only what this host's role runs: {', '.join(HOST_ROLES)} (repeat for several; "
                 "none: the whole Procfile)."),
) -> None:
    """Run the Procfile (one worker per queue + the scheduler; one gpu_training worker per
    visible CUDA device), or the part of it for this host's roles; or show its lines."""
    from config.settings import get_settings

    procfile = procfile_for_roles((PROJECT_ROOT / "Procfile").read_text(), role)
    text = procfile_for_devices(procfile, visible_cuda_devices())
    if show:
        typer.echo(text)
        return
    procfile = get_settings().var_dir / "Procfile.devices"
    procfile.parent.mkdir(parents=True, exist_ok=True)
    procfile.write_text(text)
    honcho = Path(sys.executable).parent / "honcho"
    os.execv(str(honcho), [str(honcho), "start", "-f", str(procfile), "-d", str(PROJECT_ROOT)])


def procfile_for_roles(procfile: str, roles: list[str]) -> str:
    """The Procfile lines that hosts of ``roles`` run (``HOST_ROLES``), in Procfile order;
    no role: the whole Procfile.

    Raises:
        typer.BadParameter: an unknown role.
    """
    unknown = [r for r in roles if r not in HOST_ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role(s) {unknown}; roles: {', '.join(HOST_ROLES)}", param_hint="--role")
    if not roles:
        return procfile
    wanted = {name for r in roles for name in HOST_ROLES[r]}
    return "".join(f"{line}\n" for line in procfile.splitlines() if line.partition(":")[0].strip() in wanted)


def visible_cuda_devices() -> list[str]:
    """The CUDA devices this host's workers may use: ``CUDA_VISIBLE_DEVICES`` when set, else
    every device torch sees (none without CUDA)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip()]
    import torch

    return [str(k) for k in range(torch.cuda.device_count())]


def procfile_for_devices(procfile: str, devices: list[str]) -> str:
    """The Procfile with its ``gpu_training`` line repeated once per device (``gpu_training_<d>``,
    each with ``CUDA_VISIBLE_DEVICES=<d>``), so every accelerator has a worker of its own: a
    training job takes one device whole. With one device or none the Procfile is unchanged."""
    if len(devices) < 2:
        return procfile
    lines = []
    for line in procfile.splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "gpu_training":
            lines += [f"gpu_training_{d}: CUDA_VISIBLE_DEVICES={d} {command.strip()}" for d in devices]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


# Every argument after the command goes to Dramatiq or periodiq as it is.
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASS_THROUGH)
def worker(context: typer.Context) -> None:
    """Run a Dramatiq worker (the `dramatiq` command's arguments) with every line of every process as JSON.

    Dramatiq's own main process would write plain-text lines; here it logs through the same
    structlog set-up as the worker processes it forks (Procfile lines).
    """
    from dramatiq.cli import main, make_argument_parser

    from config.logging import configure_logging
    from config.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    args = make_argument_parser().parse_args([*context.args, "--skip-logging"])
    _place(args, settings, processes_given=bool({"-p", "--processes"} & set(context.args)))
    raise typer.Exit(main(args) or 0)


def _place(args, settings, *, processes_given: bool) -> None:  # type: ignore[no-untyped-def]
    """Apply the worker's CPU placement before Dramatiq starts (its processes inherit it); a
    heavy worker whose process count is not given runs one process per CPU left to it."""
    import structlog

    from actors.platform.placement import apply_placement, placement_for
    from config.queues import QUEUES

    placement = placement_for(args.queues or QUEUES, settings, frozenset(os.sched_getaffinity(0)))
    apply_placement(placement)
    if placement.heavy and not processes_given:
        args.processes = len(os.sched_getaffinity(0))
    structlog.get_logger("pfd.worker").info("worker.placement", processes=args.processes, **placement.describe())


@app.command(context_settings=_PASS_THROUGH)
def scheduler(context: typer.Context) -> None:
    """Run periodiq (the `periodiq` command's arguments) with every line as JSON (Procfile line)."""
    import periodiq

    from config.logging import configure_logging
    from config.settings import get_settings

    configure_logging(get_settings())
    raise typer.Exit(periodiq.main(periodiq.make_argument_parser().parse_args(context.args)) or 0)


@app.command("record-jobs")
def record_jobs() -> None:
    """Run the job recorder: write job states from Redis to the database (Procfile line)."""
    from actors.platform.jobs import job_store
    from actors.platform.recorder import run_recorder
    from config.settings import get_settings

    load_broker()
    settings = get_settings()
    stop = stop_on_signals()
    run_recorder(job_store(), interval_s=settings.job_flush_interval_s, batch=settings.job_flush_batch,
                 settle_s=settings.job_record_settle_s, stop=stop)


@app.command()
def metrics(
    host: str | None = typer.Option(None, help="Address to bind (default PFD_METRICS_HOST)."),
    port: int | None = typer.Option(None, help="Port (default PFD_METRICS_PORT; 0: any free port)."),
    cluster: bool = typer.Option(True, help="Also the Redis-wide series (serve them from one host)."),
) -> None:
    """Serve Prometheus metrics: queue depths, job outcomes, this host's worker metrics (Procfile line)."""
    import structlog

    from actors.platform.broker.connection import redis_client
    from actors.platform.metrics import serve_metrics
    from config.logging import configure_logging
    from config.queues import QUEUES
    from config.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    server, _ = serve_metrics(
        host or settings.metrics_host, settings.metrics_port if port is None else port,
        redis=redis_client(settings.redis_url, settings.redis_ca_file), queues=QUEUES, worker_metrics_dir=settings.metrics_dir,
        cluster=cluster,
    )
    bound_host, bound_port = server.server_address[:2]
    log = structlog.get_logger("pfd.metrics")
    log.info("metrics.serving", url=f"http://{bound_host}:{bound_port}/metrics", cluster=cluster,
             worker_metrics_dir=str(settings.metrics_dir))
    stop = stop_on_signals()
    stop.wait()
    server.shutdown()
    log.info("metrics.stopped")
