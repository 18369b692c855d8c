"""Celery on the same Redis, the peer the dispatch and latency benchmarks compare against.

Configured like the Dramatiq stacks it is measured beside: one queue, acks after the task
ran (``task_acks_late``, Dramatiq's at-least-once), results only for the task whose caller
reads them, no per-task log lines (``-l WARNING``), a thread pool of the same size.
"""

from __future__ import annotations

from celery import Celery

from config.settings import get_settings

QUEUE = "bench"

app = Celery("pfd_bench", broker=get_settings().redis_url, backend=get_settings().redis_url)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench_noop", ignore_result=True)
def bench_noop() -> None:
    """Do nothing: every cost measured is Celery's."""


@app.task(name="bench_echo")
def bench_echo() -> int:
    """Return 1 through the result backend, for round trips."""
    return 1
