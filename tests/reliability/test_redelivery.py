"""Redelivery after a worker dies: how soon, how it is counted, and what the crash guard makes of it.

Each test owns a ``redis-server`` and starts its own one-process, one-thread
``cpu_processing`` workers (the Procfile line, prefetch 1), so which worker holds the job is
known and nothing else consumes the queue. The test environment's broker heartbeat timeout
is 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from actors.platform.dead_letters import list_dead_letters
from actors.store.db import get_database
from actors.store.jobs import JobStore
from tests import env as test_env
from tests.servers import RedisServer, send_messages
from tests.waiting import wait_until
from tests.workers import Workers

pytestmark = pytest.mark.slow

HEARTBEAT_TIMEOUT_S = int(test_env.TEST_ENV["PFD_BROKER_HEARTBEAT_TIMEOUT_MS"]) / 1000
# A worker that boots waits this long for the first redelivery it makes (a heartbeat timeout).
ROUND_S = 120


class OwnCluster:
    """A Redis of the test's own, its workers, a job store on it and a producer that sends to it."""

    def __init__(self, tmp_path: Path, pg_url: str) -> None:
        self.server = RedisServer(tmp_path / "redis", appendonly=True).start()
        self.env = {"PFD_REDIS_URL": self.server.url(), "PFD_CPU_PROCESSES": "1"}
        self.workers = Workers(tmp_path, extra_env=self.env)
        self.client = self.server.client()
        self.store = JobStore(self.client, get_database(pg_url), cache_ttl_s=3600)
        self.key = f"test:{uuid.uuid4().hex}"

    def send_work(self, seconds: float) -> str:
        """Send one ``durable_work`` job; return its message id."""
        return send_messages([{"actor": "durable_work", "kwargs": {"key": self.key, "seconds": seconds}}], self.env)[0]

    def starts(self, message_id: str) -> int:
        """How many times the job's body has started."""
        return int(self.client.hget(f"{self.key}:starts", message_id) or 0)

    def start_worker(self, tag: str, line: str = "cpu_processing") -> None:
        """Start the Procfile's worker ``line`` (one process) and wait until it takes messages."""
        self.workers.start(line, tag=tag)
        wait_until(lambda: any(line.get("event") == "Worker process is ready for action." for line in self.lines(tag)),
                   timeout=90, what=f"worker {tag} to be ready")

    def lines(self, tag: str) -> list[dict]:
        """The JSON log lines worker ``tag`` wrote so far."""
        found = []
        for raw in self.workers.log(tag).splitlines():
            try:
                found.append(json.loads(raw))
            except ValueError:
                continue
        return found

    def close(self) -> None:
        """Kill what is left (jobs here run for long) and stop the server."""
        for tag in list(self.workers.processes):
            self.workers.signal(tag, signal.SIGKILL)
        self.workers.stop_all()
        self.server.stop()


@pytest.fixture
def cluster(app, pg_url, tmp_path):  # type: ignore[no-untyped-def]
    own = OwnCluster(tmp_path, pg_url)
    yield own
    own.close()


def test_a_killed_workers_job_starts_on_a_waiting_worker_within_the_heartbeat_timeout_plus_two_seconds(
    cluster, reliability,
):
    # Three kills of the worker running it: the operator's doing, not the job's, so the crash
    # guard is out of this test's way.
    cluster.workers.extra_env["PFD_CRASH_GUARD_MAX_STARTS"] = "100"
    # A worker that is always there, as on a control host: it sweeps every queue's dead
    # workers, so the waiting worker's own start does not set the pace.
    cluster.start_worker("control", line="high_priority")
    cluster.start_worker("worker0")
    message_id = cluster.send_work(seconds=50)
    wait_until(lambda: cluster.starts(message_id) == 1, timeout=60, what="the job to start")
    delays = []
    for n in range(1, 4):
        # Given a worker waiting on the queue while another runs the job
        cluster.start_worker(f"worker{n}")
        # When the one running it is killed
        cluster.workers.signal(f"worker{n - 1}", signal.SIGKILL)
        killed_at = time.monotonic()
        # Then the job starts on the waiting one within the heartbeat timeout plus 2 s, every time
        wait_until(lambda n=n: cluster.starts(message_id) == n + 1, timeout=HEARTBEAT_TIMEOUT_S + 60, interval=0.02,
                   what=f"redelivery {n}")
        delays.append(round(time.monotonic() - killed_at, 2))
        cluster.workers.stop(f"worker{n - 1}")
    assert max(delays) <= HEARTBEAT_TIMEOUT_S + 2, delays

    # Its record counts every delivery; attempts count only retries (there were none).
    job = cluster.store.get(message_id)
    assert (job.state, job.attempts) == ("running", 1)
    assert job.deliveries == 4
    shown = subprocess.run([str(Path(sys.executable).parent / "pfd"), "status", message_id, "--json"],
                           env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout)["job"]["deliveries"] == 4
    reliability.record(
        "worker_sigkill_redelivery_time",
        fault="the worker running a job killed (SIGKILL) while another waits on its queue, 3 times in a row",
        outcome="the job started on the waiting worker within the heartbeat timeout plus 2 s each time; "
                "its record counts 4 deliveries, 1 attempt",
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, kill_to_start_s=delays,
    )


def _shutdown_begun(cluster: OwnCluster, tag: str) -> bool:
    return any(line.get("event") == "Shutting down..." for line in cluster.lines(tag))


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
def test_the_crash_guard_counts_deaths_while_running_but_not_stops_that_were_asked_for(cluster, stop):
    """Three times, the worker running a crash-guarded job is killed: with SIGKILL alone (a
    crash), or after a SIGTERM whose graceful stop the job outlasts (a supervisor's stop, then
    its kill after the grace). The guard's limit is 3: the fourth start is refused after three
    crashes, and runs after three stops."""
    message_id = cluster.send_work(seconds=50)
    for n in range(3):
        tag = f"worker{n}"
        cluster.start_worker(tag)
        wait_until(lambda n=n: cluster.starts(message_id) == n + 1, timeout=ROUND_S, what=f"start {n + 1}")
        if stop == "sigterm":
            cluster.workers.signal(tag, signal.SIGTERM)
            wait_until(lambda t=tag: _shutdown_begun(cluster, t), timeout=30, what=f"{tag} to begin its stop")
        cluster.workers.signal(tag, signal.SIGKILL)
        cluster.workers.stop(tag)

    cluster.start_worker("worker3")
    if stop == "sigkill":
        job = wait_until(lambda: (j := cluster.store.get(message_id)).final and j, timeout=ROUND_S,
                         what="the fourth start to be refused")
        assert (job.state, job.error_type) == ("failed", "WorkerCrashLoop")
        assert cluster.starts(message_id) == 3
        assert any(d.message_id == message_id for d in list_dead_letters(cluster.client, "cpu_processing"))
    else:
        # The fourth start runs, or is refused: either ends the wait.
        job = wait_until(lambda: (cluster.starts(message_id) == 4 or cluster.store.get(message_id).final)
                         and cluster.store.get(message_id), timeout=ROUND_S, what="the fourth start")
        assert (job.state, job.error_type) == ("running", None)
        assert cluster.starts(message_id) == 4
        assert not list_dead_letters(cluster.client, "cpu_processing")


def test_a_redis_outage_longer_than_the_heartbeat_timeout_redelivers_nothing_that_still_runs(cluster):
    """After an outage every heartbeat in Redis is stale, the live workers' too: a sweep right
    after it would run their jobs a second time."""
    cluster.start_worker("busy")
    message_id = cluster.send_work(seconds=HEARTBEAT_TIMEOUT_S + 20)
    wait_until(lambda: cluster.starts(message_id) == 1, timeout=60, what="the job to start")
    cluster.start_worker("idle")

    cluster.server.stop()
    down_at = time.monotonic()
    # The fault itself: an outage longer than the heartbeat timeout.
    wait_until(lambda: time.monotonic() - down_at > HEARTBEAT_TIMEOUT_S + 2, timeout=HEARTBEAT_TIMEOUT_S + 10,
               what="the outage to last past the heartbeat timeout")
    cluster.server.start()

    wait_until(lambda: int(cluster.client.hget(f"{cluster.key}:done", message_id) or 0) == 1, timeout=90,
               what="the job to finish")
    assert cluster.starts(message_id) == 1
    job = wait_until(lambda: (j := cluster.store.get(message_id)).final and j, timeout=30, what="its record")
    assert (job.state, job.deliveries) == ("succeeded", 1)
