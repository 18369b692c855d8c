"""The dashboard's job list filters and pages a recorded table (its speed over 100,000 jobs is
measured by ``python -m bench.bench_listings``, not here)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from actors.store.models import Job
from tests.web.conftest import sign_in

STATES = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def recorded(database):  # type: ignore[no-untyped-def]
    """120 jobs of two actors of this module's own, one a minute, newest last."""
    tag = uuid.uuid4().hex[:8]
    start = datetime.now(UTC) - timedelta(days=2)
    rows = [{"message_id": f"list-{tag}-{i:03d}", "actor": f"lister_{tag}_{i % 2}", "queue": "cpu_processing",
             "state": STATES[i % len(STATES)], "progress": 1.0, "status": "done", "attempts": 1, "deliveries": 1,
             "enqueued_at": start + timedelta(minutes=i), "finished_at": start + timedelta(minutes=i, seconds=1),
             "version": 1} for i in range(120)]
    with database.session() as session:
        session.execute(insert(Job), rows)
    return tag


def _ids(html: str, tag: str) -> list[int]:
    """This module's jobs on a page, in the page's order, each once."""
    return list(dict.fromkeys(int(n) for n in re.findall(rf"list-{tag}-(\d{{3}})", html)))


def test_the_job_list_filters_by_actor_and_state_and_pages_newest_first(client, recorded):
    sign_in(client, "vera")
    actor = f"lister_{recorded}_1"
    mine = [i for i in range(119, -1, -1) if i % 2 == 1]  # the actor's 60 jobs, newest first
    # 50 a page: page 1 holds the 50 newest, page 2 the 10 oldest.
    assert _ids(client.get(f"/jobs?actor={actor}").text, recorded) == mine[:50]
    assert _ids(client.get(f"/jobs?actor={actor}&page=2").text, recorded) == mine[50:]
    failed = _ids(client.get(f"/jobs?actor={actor}&state=failed").text, recorded)
    assert failed == [i for i in mine if STATES[i % len(STATES)] == "failed"] and failed
    cancelled = _ids(client.get(f"/jobs?state=cancelled&actor=lister_{recorded}_0").text, recorded)
    assert cancelled == [i for i in range(119, -1, -1) if i % 2 == 0 and STATES[i % len(STATES)] == "cancelled"]
