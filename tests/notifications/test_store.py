"""Notification records: one contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from actors.store.db import Database, migrate
from actors.store.notifications import (
    claim_delivery,
    finish_delivery,
    get_channel_health,
    get_delivery,
    list_inbox,
    mark_read,
    preference_enabled,
    record_channel_result,
    resume_channel,
    set_preference,
    write_inbox,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A database at head: a fresh SQLite file, or the test PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('notify-store') / 'store.sqlite3'}"
        migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    database = Database(url)
    yield database
    database.dispose()


def _id() -> str:
    return f"ev-{uuid.uuid4().hex[:12]}"


def test_inbox_row_is_written_once_per_event_and_user_and_can_be_marked_read(store):
    event_id, user = _id(), f"u-{uuid.uuid4().hex[:6]}"
    item = {
        "event_id": event_id,
        "user": user,
        "event_type": "hpo.failed",
        "subject": "s",
        "body": "b",
        "link": "l",
        "payload": {"a": 1},
    }
    assert write_inbox(store, **item)
    assert not write_inbox(store, **item)
    assert write_inbox(store, **{**item, "user": user + "-2"})
    (row,) = list_inbox(store, user)
    assert (row["event_id"], row["payload"], row["read"]) == (event_id, {"a": 1}, False)
    assert mark_read(store, user, [row["id"]]) == 1
    assert mark_read(store, user, [row["id"]]) == 0
    assert list_inbox(store, user, unread_only=True) == []


def test_delivery_held_by_another_sender_is_busy_until_its_lease_ends(store):
    event_id = _id()
    common = {"event_id": event_id, "channel": "webhook", "user": "default", "event_type": "dataset.generated"}
    assert claim_delivery(store, **common, holder="a", lease_s=60).acquired
    busy = claim_delivery(store, **common, holder="b", lease_s=60)
    assert busy.busy and not busy.acquired
    finish_delivery(store, event_id=event_id, channel="webhook", holder="a", state="sent")
    done = claim_delivery(store, **common, holder="b", lease_s=60)
    assert (done.acquired, done.state, done.busy) == (False, "sent", False)
    assert get_delivery(store, event_id, "webhook")["sent_at"] is not None
    # A holder that died leaves a lease that runs out; the next sender takes over.
    other = {**common, "event_id": event_id + "-x"}
    assert claim_delivery(store, **other, holder="dead", lease_s=0).acquired
    taken = claim_delivery(store, **other, holder="c", lease_s=60)
    assert taken.acquired and taken.attempts == 2
    # The late holder's outcome no longer counts.
    finish_delivery(store, event_id=event_id + "-x", channel="webhook", holder="dead", state="failed", error="late")
    assert get_delivery(store, event_id + "-x", "webhook")["state"] == "sending"


def test_preference_for_the_event_type_beats_the_wildcard_which_beats_the_default(store):
    user = f"u-{uuid.uuid4().hex[:6]}"
    assert preference_enabled(store, user, "training.completed", "email", default=True)
    set_preference(store, user, "*", "email", False)
    assert not preference_enabled(store, user, "training.completed", "email", default=True)
    set_preference(store, user, "training.completed", "email", True)
    assert preference_enabled(store, user, "training.completed", "email", default=False)
    assert not preference_enabled(store, user, "training.failed", "email", default=True)
    assert preference_enabled(store, user, "training.failed", "webhook", default=True)


def test_channel_is_paused_after_the_limit_of_failures_in_a_row_and_a_success_resets_it(store):
    channel = f"ch-{uuid.uuid4().hex[:6]}"
    assert record_channel_result(store, channel, ok=False, failure_limit=3, error="e1")["consecutive_failures"] == 1
    record_channel_result(store, channel, ok=True, failure_limit=3)
    for n in range(3):
        health = record_channel_result(store, channel, ok=False, failure_limit=3, error=f"e{n}")
    assert health == {"channel": channel, "consecutive_failures": 3, "paused": True, "last_error": "e2"}
    resume_channel(store, channel)
    assert get_channel_health(store, channel)["paused"] is False
