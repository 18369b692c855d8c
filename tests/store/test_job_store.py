"""Job store contract, run against every database backend: SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis as redis_lib
from sqlalchemy import select

from actors.platform.errors import JobNotFound
from actors.store.db import Database
from actors.store.jobs import JobStore
from actors.store.models import Job
from tests import env
from tests.conftest import migrate, recreate_pg_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'jobs.sqlite3'}"
    else:
        url = recreate_pg_database("pfd_test_store")
    migrate(url)
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture
def store(database):  # type: ignore[no-untyped-def]
    client = redis_lib.Redis.from_url(env.REDIS_URL)
    return JobStore(client, database, cache_ttl_s=60, prefix=f"pfdtest{uuid.uuid4().hex[:8]}")


def _row(database: Database, message_id: str) -> Job | None:
    with database.session() as session:
        return session.scalars(select(Job).where(Job.message_id == message_id)).first()


def test_state_changes_are_live_at_once_and_in_the_database_after_a_flush(store, database):
    store.enqueued("m1", "act", "high_priority")
    assert store.get("m1").state == "queued"
    assert _row(database, "m1") is None
    store.started("m1", "act", "high_priority", attempt=1, worker="w")
    store.progress("m1", 0.5, "half", {"epoch": 3})
    assert store.flush() == 1
    row = _row(database, "m1")
    assert (row.state, row.progress, row.status, row.metrics) == ("running", 0.5, "half", {"epoch": 3})
    store.finished("m1", "succeeded", duration_ms=12.5, result={"n": 1})
    store.flush()
    row = _row(database, "m1")
    assert (row.state, row.progress, row.duration_ms, row.result) == ("succeeded", 1.0, 12.5, {"n": 1})
    assert store.dirty_count() == 0


def test_an_older_snapshot_never_overwrites_a_newer_row(store, database):
    store.enqueued("m2", "act", "q")
    store.finished("m2", "succeeded", duration_ms=1.0)
    store.flush()
    newer_version = _row(database, "m2").version
    # A slow flusher that read the job before it finished writes its old snapshot late.
    stale = {"message_id": "m2", "actor": "act", "queue": "q", "state": "running", "progress": 0.1,
             "status": "", "attempts": 1, "duration_ms": None, "error_type": None, "error_message": None,
             "result": None, "metrics": None, "fanout_id": None, "worker": None,
             "version": newer_version - 1, "updated_at": datetime.now(UTC), "enqueued_at": None,
             "started_at": None, "finished_at": None}
    store._upsert([stale])
    assert _row(database, "m2").state == "succeeded"


def test_a_change_made_during_a_flush_is_flushed_later(store, database):
    store.enqueued("m3", "act", "q")
    read_version = store.get("m3").version
    store.progress("m3", 0.3)  # newer than what a flusher would have read
    # Forgetting with the old version must keep the job dirty.
    store._forget(keys=[store.final_dirty_key, store.dirty_key], args=[store.key(""), 60, "m3", read_version, "0"])
    assert store.dirty_count() == 1
    store.flush()
    assert _row(database, "m3").progress == 0.3


def test_a_state_superseded_before_it_settled_is_never_written(store, database):
    store.enqueued("m8", "act", "q")
    store.started("m8", "act", "q", attempt=1, worker="w")
    # Not settled yet: nothing is written, the job stays dirty
    assert store.flush(settle_s=3600) == 0
    assert _row(database, "m8") is None and store.dirty_count() == 1
    # Once final, it is written at once, whatever the settle time: one row, the outcome
    store.finished("m8", "succeeded", duration_ms=2.0)
    assert store.flush(settle_s=3600) == 1
    assert _row(database, "m8").state == "succeeded"
    assert store.dirty_count() == 0


def test_final_jobs_are_written_before_others(store, database):
    store.enqueued("m9", "act", "q")
    store.enqueued("m10", "act", "q")
    store.finished("m10", "succeeded", duration_ms=1.0)
    assert store.flush(limit=1) == 1
    assert _row(database, "m10").state == "succeeded" and _row(database, "m9") is None
    assert store.flush(limit=1) == 1
    assert _row(database, "m9").state == "queued"


def test_flushing_twice_writes_one_row(store, database):
    store.enqueued("m4", "act", "q")
    store.flush()
    store.enqueued("m4", "act", "q")
    store.flush()
    with database.session() as session:
        assert len(session.scalars(select(Job).where(Job.message_id == "m4")).all()) == 1


def test_cancel_request_is_seen_by_the_next_progress_report(store):
    store.enqueued("m5", "act", "q")
    store.started("m5", "act", "q", attempt=1, worker="w")
    assert store.progress("m5", 0.1) is False
    assert store.request_cancel("m5").cancel_requested
    assert store.progress("m5", 0.2) is True


def test_finished_jobs_are_read_from_the_database_once_redis_forgot_them(store):
    store.enqueued("m6", "act", "q")
    store.finished("m6", "failed", duration_ms=3.0, error=ValueError("bad input: x"))
    store.flush()
    store.redis.delete(store.key("m6"))
    view = store.get("m6")
    assert (view.state, view.error_type, view.error_message) == ("failed", "ValueError", "bad input: x")
    with pytest.raises(JobNotFound):
        store.get("no-such-job")


def test_final_jobs_expire_from_redis_only_after_they_are_recorded(store):
    store.enqueued("m7", "act", "q")
    assert store.redis.ttl(store.key("m7")) > 3600
    store.finished("m7", "succeeded", duration_ms=1.0)
    assert store.redis.ttl(store.key("m7")) > 3600  # not before it is recorded
    store.flush()
    assert 0 < store.redis.ttl(store.key("m7")) <= 60


def test_a_job_requeued_after_redis_forgot_it_is_written_over_its_old_row(store, database):
    store.enqueued("m11", "act", "q")
    store.finished("m11", "failed", duration_ms=1.0, error=ValueError("boom"))
    store.flush()
    old_version = _row(database, "m11").version
    store.redis.delete(store.key("m11"))  # the cache TTL passed
    # When the dead letter is sent again, its job continues from the row's version
    store.continue_versions("m11")
    store.enqueued("m11", "act", "q")
    store.flush()
    row = _row(database, "m11")
    assert row.state == "queued" and row.version > old_version


def test_a_final_snapshot_does_not_shorten_the_ttl_of_a_job_requeued_since(store, database):
    store.enqueued("m12", "act", "q")
    store.finished("m12", "failed", duration_ms=1.0)
    snapshot_version = store.get("m12").version
    store.enqueued("m12", "act", "q")  # requeued after the recorder read it
    store._forget(keys=[store.final_dirty_key, store.dirty_key],
                  args=[store.key(""), 60, "m12", snapshot_version, "1"])
    assert store.redis.ttl(store.key("m12")) > 3600
    assert store.dirty_count() == 1
