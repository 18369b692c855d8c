"""Stop signals never deadlock a worker, wherever they land (issue: SIGTERM self-deadlock).

A supervisor's SIGTERM reaches a worker child twice (from the runner and from Dramatiq's
main process). When the second landed while the first one's log line held the log lock,
the handler's own log line waited for that lock forever and the "stopped" worker kept
taking jobs. Here signals are delivered from inside log writes on purpose.
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

from actors.platform.jobs import wait_for_job
from tests.probe_actors import chatty_work
from tests.waiting import wait_until
from tests.workers import Workers, _group_gone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_inside_every_log_write_never_deadlocks(tmp_path):
    rounds = 300
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.signal_storm", str(rounds)],
        cwd=ROOT, capture_output=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    summary = json.loads(run.stdout.decode().splitlines()[-1])
    assert summary == {"rounds": rounds, "dramatiq_stops": 1}  # the first stop passed on, repeats held back
    lines = run.stderr.decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole: none cut into by another
    assert sum(r["event"] == "storm.line" for r in records) == rounds
    assert sum(r["event"].startswith("storm stdlib line") for r in records) == rounds
    assert any(r["event"] == "worker.repeated_stop_signal_ignored" for r in records)


@pytest.fixture
def own_workers(app, tmp_path):  # type: ignore[no-untyped-def]
    running = Workers(tmp_path, extra_modules=("tests.probe_actors", "tests.log_write_signals"),
                      extra_env={"PFD_TEST_SIGNAL_ON_LINE": "Stopping worker process"})
    yield running
    running.stop_all()


def test_worker_sigtermed_in_a_loop_under_log_load_exits_and_starts_nothing_after(own_workers, redis_client, workers, reliability):
    # Out of this test's way: the shared cpu_processing workers would take its messages.
    workers.pause_idle("cpu_processing", redis_client)
    try:
        key = f"test:{uuid.uuid4().hex}"
        sent = []
        exits = []
        for round_ in range(3):
            tag = f"stopped{round_}"
            own_workers.start("cpu_processing", tag=tag, command=own_workers.cpu_command(2))
            sent += [chatty_work.send(key=key, seconds=1.0) for _ in range(6)]
            started_by_now = 2 * (round_ + 1)
            wait_until(lambda want=started_by_now: redis_client.hlen(f"{key}:started_at") >= want,
                       timeout=90, what="two jobs running on the worker")
            # As a Procfile runner stops it: SIGTERM to the group, then the worker's own
            # hook sends a second SIGTERM from inside the "Stopping worker process" log write.
            process = own_workers.processes.pop(tag)
            signalled_at = time.time()
            os.killpg(process.pid, signal.SIGTERM)
            gone = _group_gone(process, timeout=30)
            exits.append(round(time.time() - signalled_at, 2))
            if not gone:
                os.killpg(process.pid, signal.SIGKILL)
            assert gone, f"worker still running 30 s after SIGTERM:\n{own_workers.log(tag)[-3000:]}"
            started = {k.decode(): float(v) for k, v in redis_client.hgetall(f"{key}:started_at").items()}
            late = {m: t - signalled_at for m, t in started.items() if t > signalled_at}
            assert not late, f"jobs started after the signal: {late}"
            assert "worker.repeated_stop_signal_ignored" in own_workers.log(tag)
        # Each stop took its running 1 s jobs plus Dramatiq's own polling loops (about 3.5 s on a
        # quiet machine): well inside the documented bound, a stop timeout of 10 s past the jobs.
        assert max(exits) < 1.0 + 10.0, exits
        own_workers.start("cpu_processing", tag="drain", command=own_workers.cpu_command(4))
        for message in sent:
            assert wait_for_job(message.message_id, timeout_s=90).state == "succeeded"
        assert {int(v) for v in redis_client.hvals(f"{key}:done")} == {1}  # every job once
        reliability.record(
            "worker_sigterm_in_log_write",
            fault="SIGTERM to a worker's group under log load, a second SIGTERM inside its stop log line, 3 rounds",
            outcome="the worker exited each time, started no job after the signal, every job ran once",
            rounds=len(exits), exit_seconds=exits, messages=len(sent),
        )
    finally:
        workers.signal("cpu_processing", signal.SIGCONT)
