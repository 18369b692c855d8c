"""Notification records: inbox rows, one delivery per event and channel, preferences, channel health.

A ``Delivery`` row is the idempotency key: its ``(event_id, channel)`` pair is unique, a
sender must hold its lease to send, and a row that reached ``sent``, ``failed`` or
``paused`` is never sent again, however often the message is redelivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from actors.store.db import Database
from actors.store.models import Base, utcnow

__all__ = [
    "FINAL_DELIVERY_STATES",
    "ChannelHealth",
    "Claim",
    "Delivery",
    "InboxItem",
    "NotificationPreference",
    "channel_paused",
    "claim_delivery",
    "finish_delivery",
    "get_channel_health",
    "get_delivery",
    "insert_ignore",
    "list_inbox",
    "mark_read",
    "preference_enabled",
    "record_channel_result",
    "resume_channel",
    "set_preference",
    "write_inbox",
]

FINAL_DELIVERY_STATES = frozenset({"sent", "failed", "paused"})
_ERROR_LIMIT = 2000


class InboxItem(Base):
    """One event in a user's in-app inbox."""

    __tablename__ = "notification_inbox"
    __table_args__ = (UniqueConstraint("event_id", "user", name="uq_notification_inbox_event_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(100), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Delivery(Base):
    """One event on one channel: ``sending`` (leased), ``retrying``, then ``sent``, ``failed`` or ``paused``."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "channel", name="uq_notification_deliveries_event_channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    user: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NotificationPreference(Base):
    """Whether ``user`` wants ``event_type`` (or ``*``, every type) on ``channel``."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user", "event_type", "channel", name="uq_notification_preferences"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChannelHealth(Base):
    """Consecutive failures of a channel; past the limit it is paused."""

    __tablename__ = "notification_channel_health"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any], keys: list[str]) -> bool:
    """Insert a row unless one with the same ``keys`` exists; return whether it was inserted."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    returned = session.execute(statement.returning(*inspect(model).primary_key)).first()
    return returned is not None


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def write_inbox(database: Database, *, event_id: str, user: str, event_type: str, subject: str, body: str,
                link: str, payload: dict[str, Any]) -> bool:
    """Add the event to the user's inbox once; return whether this call added it."""
    values = {"event_id": event_id, "user": user, "event_type": event_type, "subject": subject[:300], "body": body,
              "link": link, "payload": payload, "created_at": utcnow()}
    with database.session() as session:
        return insert_ignore(session, InboxItem, values, ["event_id", "user"])


def list_inbox(database: Database, user: str, *, unread_only: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """Return the user's newest inbox items as JSON-safe dicts."""
    query = select(InboxItem).where(InboxItem.user == user)
    if unread_only:
        query = query.where(InboxItem.read_at.is_(None))
    with database.session() as session:
        rows = session.scalars(query.order_by(InboxItem.created_at.desc(), InboxItem.id.desc()).limit(limit)).all()
        return [
            {"id": r.id, "event_id": r.event_id, "event_type": r.event_type, "subject": r.subject, "body": r.body,
             "link": r.link, "payload": r.payload, "read": r.read_at is not None,
             "created_at": _aware(r.created_at).isoformat()}
            for r in rows
        ]


def mark_read(database: Database, user: str, item_ids: list[int]) -> int:
    """Mark the user's items read; return how many changed."""
    with database.session() as session:
        rows = session.scalars(select(InboxItem).where(
            InboxItem.user == user, InboxItem.id.in_(item_ids), InboxItem.read_at.is_(None))).all()
        for row in rows:
            row.read_at = utcnow()
        return len(rows)


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to send an event on a channel."""

    state: str
    acquired: bool
    attempts: int = 0
    busy: bool = False


def _delivery(event_id: str, channel: str) -> Select[Delivery]:
    return select(Delivery).where(Delivery.event_id == event_id, Delivery.channel == channel)


def claim_delivery(database: Database, *, event_id: str, channel: str, user: str, event_type: str, holder: str,
                   lease_s: float) -> Claim:
    """Take the lease on sending ``event_id`` on ``channel``.

    Not acquired when the delivery already ended (``sent``, ``failed``, ``paused``) or when
    another holder's lease is still running (``busy``: it may be sending right now).
    """
    now = utcnow()
    with database.session() as session:
        insert_ignore(session, Delivery, {"event_id": event_id, "channel": channel, "user": user,
                                           "event_type": event_type, "state": "pending", "attempts": 0,
                                           "created_at": now, "updated_at": now}, ["event_id", "channel"])
        row = session.scalars(_delivery(event_id, channel).with_for_update()).one()
        if row.state in FINAL_DELIVERY_STATES:
            return Claim(row.state, acquired=False, attempts=row.attempts)
        leased = row.lease_until is not None and _aware(row.lease_until) > now
        if row.holder not in (None, holder) and leased:
            return Claim(row.state, acquired=False, attempts=row.attempts, busy=True)
        row.state, row.holder, row.lease_until = "sending", holder, now + timedelta(seconds=lease_s)
        row.attempts += 1
        return Claim("sending", acquired=True, attempts=row.attempts)


def finish_delivery(database: Database, *, event_id: str, channel: str, holder: str, state: str,
                    error: str | None = None) -> None:
    """Record the outcome of this holder's attempt and give the lease back."""
    with database.session() as session:
        row = session.scalars(_delivery(event_id, channel).with_for_update()).first()
        if row is None or row.holder != holder or row.state in FINAL_DELIVERY_STATES:
            return  # our lease ran out and another holder took over; its outcome stands
        row.state, row.holder, row.lease_until = state, None, None
        row.last_error = error[:_ERROR_LIMIT] if error else None
        if state == "sent":
            row.sent_at = utcnow()


def get_delivery(database: Database, event_id: str, channel: str) -> dict[str, Any] | None:
    """Return one delivery's state, attempts and error, or None."""
    with database.session() as session:
        row = session.scalars(_delivery(event_id, channel)).first()
        if row is None:
            return None
        return {"event_id": row.event_id, "channel": row.channel, "state": row.state, "attempts": row.attempts,
                "last_error": row.last_error, "sent_at": row.sent_at}


def preference_enabled(database: Database, user: str, event_type: str, channel: str, *, default: bool) -> bool:
    """The user's choice for this event type on this channel, else for ``*``, else ``default``."""
    with database.session() as session:
        rows = session.scalars(select(NotificationPreference).where(
            NotificationPreference.user == user, NotificationPreference.channel == channel,
            NotificationPreference.event_type.in_((event_type, "*")))).all()
    chosen = {row.event_type: row.enabled for row in rows}
    return chosen.get(event_type, chosen.get("*", default))


def set_preference(database: Database, user: str, event_type: str, channel: str, enabled: bool) -> None:
    """Set whether ``user`` receives ``event_type`` (or ``*``) on ``channel``."""
    with database.session() as session:
        if not insert_ignore(session, NotificationPreference,
                              {"user": user, "event_type": event_type, "channel": channel, "enabled": enabled,
                               "updated_at": utcnow()}, ["user", "event_type", "channel"]):
            row = session.scalars(select(NotificationPreference).where(
                NotificationPreference.user == user, NotificationPreference.event_type == event_type,
                NotificationPreference.channel == channel).with_for_update()).one()
            row.enabled = enabled


def channel_paused(database: Database, channel: str, *, pause_s: float) -> bool:
    """True while the channel is paused; after ``pause_s`` one attempt may probe it again."""
    with database.session() as session:
        row = session.get(ChannelHealth, channel)
        if row is None or not row.paused:
            return False
        return row.paused_at is None or utcnow() - _aware(row.paused_at) < timedelta(seconds=pause_s)


def record_channel_result(database: Database, channel: str, *, ok: bool, failure_limit: int,
                          error: str | None = None) -> dict[str, Any]:
    """Count a success (resets) or a failure (pauses at ``failure_limit`` in a row); return the health."""
    with database.session() as session:
        insert_ignore(session, ChannelHealth, {"channel": channel, "consecutive_failures": 0, "paused": False,
                                                "updated_at": utcnow()}, ["channel"])
        row = session.scalars(select(ChannelHealth).where(ChannelHealth.channel == channel).with_for_update()
                              .execution_options(populate_existing=True)).one()
        if ok:
            row.consecutive_failures, row.paused, row.paused_at, row.last_error = 0, False, None, None
        else:
            row.consecutive_failures += 1
            row.last_error = error[:_ERROR_LIMIT] if error else None
            if row.consecutive_failures >= failure_limit:
                # A probe after the pause that fails again restarts the pause.
                row.paused, row.paused_at = True, utcnow()
        return _health(row)


def resume_channel(database: Database, channel: str) -> None:
    """Un-pause a channel by hand (after fixing its settings or the receiver)."""
    with database.session() as session:
        row = session.get(ChannelHealth, channel, with_for_update=True)
        if row is not None:
            row.consecutive_failures, row.paused, row.paused_at = 0, False, None


def get_channel_health(database: Database, channel: str) -> dict[str, Any]:
    """Return a channel's consecutive failures and whether it is paused."""
    with database.session() as session:
        row = session.get(ChannelHealth, channel)
        if row is None:
            return {"channel": channel, "consecutive_failures": 0, "paused": False, "last_error": None}
        return _health(row)


def _health(row: ChannelHealth) -> dict[str, Any]:
    return {"channel": row.channel, "consecutive_failures": row.consecutive_failures, "paused": row.paused,
            "last_error": row.last_error}
