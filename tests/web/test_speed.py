"""How fast the dashboard answers with a large job table (the issue's goal: 100,000 jobs, a
list page in under 300 ms of server time)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from actors.store.models import Job
from tests.web.conftest import sign_in

N_JOBS = 100_000
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def many_jobs(database):  # type: ignore[no-untyped-def]
    """100,000 recorded jobs, sent two to three days ago (so newer tests' jobs stay on top)."""
    start = datetime.now(UTC) - timedelta(days=3)
    tag = uuid.uuid4().hex[:8]
    rows = [{"message_id": f"speed-{tag}-{i}", "actor": f"actor_{i % 20}", "queue": "cpu_processing",
             "state": STATES[i % len(STATES)], "progress": 1.0, "status": "done", "attempts": 1, "deliveries": 1,
             "enqueued_at": start + timedelta(seconds=i), "finished_at": start + timedelta(seconds=i + 1),
             "version": 1} for i in range(N_JOBS)]
    with database.session() as session:
        for chunk in range(0, N_JOBS, 10_000):
            session.execute(insert(Job), rows[chunk:chunk + 10_000])
    return tag


@pytest.mark.slow
def test_the_job_list_renders_under_300_ms_with_100000_jobs(client, many_jobs):
    sign_in(client, "vera")
    for path in ("/jobs", "/jobs?state=failed", "/jobs?actor=actor_7", "/jobs?state=failed&page=200"):
        client.get(path)  # warm: the first query plans and fills caches
        took = []
        for _ in range(5):
            started = time.perf_counter()
            answer = client.get(path)
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200
            if "actor_7" in path or "page=" in path:  # pages only these jobs fill (others' jobs are newer)
                assert f"speed-{many_jobs}-" in answer.text
        print(f"{path}: median {sorted(took)[2] * 1000:.0f} ms")
        assert sorted(took)[2] < 0.3, (path, took)
