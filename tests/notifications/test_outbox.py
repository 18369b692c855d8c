"""The event outbox: an outcome and its announcement are one fact.

A job's completion and its event commit in one transaction; the relay to ``notify`` comes
after. The test cuts the path between the two: Redis goes away after the commit and the
worker is killed while it waits to enqueue, so only the outbox row remembers the event. The
periodic sweep then delivers it, once per channel, and a second sweep sends nothing.
"""

from __future__ import annotations

import signal
import uuid

import psycopg
import pytest
from sqlalchemy import func, select

from actors.store.datasets import get_dataset
from actors.store.db import Database
from actors.store.jobs import JobStore
from actors.store.notifications import InboxItem, get_delivery
from actors.store.outbox import get_outbox_event
from tests.notifications.conftest import notify_env
from tests.records import NOISE_OFF
from tests.servers import RedisServer, send_messages
from tests.waiting import wait_until
from tests.workers import Workers

pytestmark = pytest.mark.slow


def _conninfo(database: Database) -> str:
    return database.url.replace("postgresql+psycopg://", "postgresql://")


def _waits_on_a_lock(database: Database) -> bool:
    with psycopg.connect(_conninfo(database)) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND query ILIKE '%event_outbox%'").fetchone()
    return bool(row and row[0])


def _inbox_rows(database: Database, event_id: str) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(InboxItem).where(InboxItem.event_id == event_id))


def test_an_event_committed_with_its_outcome_is_delivered_once_after_the_relay_is_cut(
    app, database, smtp, hooks, tmp_path
):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {"PFD_REDIS_URL": server.url(), **notify_env(smtp[0].port, hooks.url),
           "PFD_OUTBOX_SETTLE_S": "0", "PFD_CRASH_GUARD_MAX_STARTS": "100"}
    running = Workers(tmp_path, extra_env=env)
    dataset_id = f"ds-outbox-{uuid.uuid4().hex[:8]}"
    event_id = f"dataset.generated:{dataset_id}"
    blocker = psycopg.connect(_conninfo(database))
    try:
        for name in ("notifications", "high_priority"):
            running.start(name)
        running.start("cpu_processing", command=running.cpu_command(threads=1))
        # Given a transaction of the test's own holding the event's outbox key, so that the
        # job's completion waits at its commit
        blocker.execute("INSERT INTO event_outbox (event_id, event_type, \"user\", payload, created_at, relays) "
                        "VALUES (%s, 'dataset.generated', 'default', '{}', now(), 0)", (event_id,))
        [message_id] = send_messages([{"actor": "generate_dataset", "kwargs": {
            "dataset_id": dataset_id, "fault_types": ["sain"], "records_per_class": 2, "noise": NOISE_OFF}}], env)
        wait_until(lambda: _waits_on_a_lock(database), timeout=120, what="the completion to wait at its commit")

        # When Redis goes away, the completion commits, and the worker dies while it waits to relay
        server.stop()
        blocker.rollback()
        wait_until(lambda: get_outbox_event(database, event_id), timeout=30, what="the outcome and event to commit")
        assert get_dataset(database, dataset_id)["status"] == "completed"
        wait_until(lambda: "broker.enqueue_waiting" in running.log("cpu_processing"), timeout=30,
                   what="the relay to wait for Redis")
        running.signal("cpu_processing", signal.SIGKILL)
        running.stop("cpu_processing")
        server.start()
        running.start("cpu_processing", command=running.cpu_command(threads=1))

        # Then the redelivered job finds its dataset done and ends, with the event not yet relayed
        store = JobStore(server.client(), database, cache_ttl_s=3600)
        wait_until(lambda: store.get(message_id).state == "succeeded", timeout=120, what="the redelivered job")
        assert get_outbox_event(database, event_id)["relays"] == 0 and not hooks.for_event(event_id)

        # And the sweep delivers it exactly once per channel; a second sweep sends nothing
        [sweep] = send_messages([{"actor": "relay_events", "kwargs": {}}], env)
        wait_until(lambda: get_outbox_event(database, event_id)["delivered_at"], timeout=60, what="the delivery")
        assert store.get(sweep).result == {"relayed": 1}
        [again] = send_messages([{"actor": "relay_events", "kwargs": {}}], env)
        wait_until(lambda: store.get(again).state == "succeeded", timeout=60, what="the second sweep")
        assert store.get(again).result == {"relayed": 0}
        assert len(hooks.for_event(event_id)) == 1
        assert len(smtp[1].for_event(event_id)) == 1
        assert _inbox_rows(database, event_id) == 1
        for channel in ("email", "webhook"):
            assert get_delivery(database, event_id, channel)["state"] == "sent"
        assert get_outbox_event(database, event_id)["relays"] == 1
    finally:
        blocker.close()
        running.stop_all()
        server.stop()
