"""One set of real worker processes, started from the Procfile, shared by platform tests."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.probe_actors import PROBES
from tests.workers import Workers

WORKER_LINES = ("high_priority", "gpu_training", "cpu_processing", "notifications")


@pytest.fixture(scope="session")
def workers(app, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The four queue workers, each started exactly as its Procfile line says."""
    from actors.jobs import get_job

    running = Workers(tmp_path_factory.mktemp("worker-logs"))
    for name in WORKER_LINES:
        running.start(name)
    try:
        # Ready when each queue has answered a probe.
        for queue, probe in PROBES.items():
            message = probe.send()
            wait_until(lambda: get_job(message.message_id).state == "succeeded", timeout=90, what=f"{queue} worker")
        yield running
    finally:
        running.stop_all()
