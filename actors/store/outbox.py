"""The event outbox: an outcome's announcement, written in the transaction that records the outcome.

A domain store function that records an outcome takes ``events`` and calls ``stage_events``
inside its own session, so the outcome and its events commit together or not at all. A relay
(right after the commit, and the periodic sweep) enqueues undelivered rows to the ``notify``
actor; ``notify`` marks a row delivered once every channel has reached its final state.
Relaying a row twice is harmless: each channel's delivery row lets it be sent only once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from actors.store.db import Database
from actors.store.models import Base, utcnow
from actors.store.notifications import insert_ignore

__all__ = ["OutboxEvent", "due_events", "get_outbox_event", "mark_delivered", "mark_relayed", "record_events",
           "stage_events"]


class OutboxEvent(Base):
    """One event to deliver: written with its outcome, relayed to ``notify``, then delivered."""

    __tablename__ = "event_outbox"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    relays: Mapped[int] = mapped_column(Integer, default=0)
    relayed_at: Mapped[datetime | None]
    # Set when every channel reached a final state (sent, failed, paused, off); never relayed after.
    delivered_at: Mapped[datetime | None] = mapped_column(index=True)


def stage_events(session: Session, events: Iterable[dict[str, Any]]) -> list[str]:
    """Add ``events`` (``{"event_id", "event", "payload", "user"}``) to the outbox in ``session``'s
    transaction; an event id already there is kept as is. Returns the event ids."""
    ids = []
    for event in events:
        insert_ignore(session, OutboxEvent, {
            "event_id": event["event_id"], "event_type": event["event"], "user": event["user"],
            "payload": event["payload"], "created_at": utcnow(), "relays": 0}, ["event_id"])
        ids.append(event["event_id"])
    return ids


def record_events(database: Database, events: Iterable[dict[str, Any]]) -> list[str]:
    """Add events whose outcome has no record of its own (a report, a check run) in their own transaction."""
    with database.session() as session:
        return stage_events(session, events)


def _rows(event_ids: Iterable[str]) -> Any:
    return select(OutboxEvent).where(OutboxEvent.event_id.in_(list(event_ids)))


def _as_dict(row: OutboxEvent) -> dict[str, Any]:
    return {"event_id": row.event_id, "event": row.event_type, "payload": row.payload, "user": row.user,
            "relays": row.relays, "relayed_at": row.relayed_at, "delivered_at": row.delivered_at}


def due_events(database: Database, *, event_ids: Iterable[str] | None = None, settle_s: float, resend_after_s: float,
               max_relays: int, limit: int = 500) -> list[dict[str, Any]]:
    """Undelivered events to relay now, oldest first.

    With ``event_ids`` (the relay right after a commit): those of them never relayed. Otherwise
    (the sweep): events older than ``settle_s`` never relayed, and events relayed more than
    ``resend_after_s`` ago and still undelivered (their ``notify`` message was lost), at most
    ``max_relays`` times each.
    """
    now = utcnow()
    query = select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
    if event_ids is not None:
        query = query.where(OutboxEvent.event_id.in_(list(event_ids)), OutboxEvent.relays == 0)
    else:
        query = query.where(OutboxEvent.relays < max_relays, or_(
            (OutboxEvent.relays == 0) & (OutboxEvent.created_at <= now - timedelta(seconds=settle_s)),
            OutboxEvent.relayed_at <= now - timedelta(seconds=resend_after_s)))
    with database.session() as session:
        rows = session.scalars(query.order_by(OutboxEvent.created_at).limit(limit)).all()
        return [_as_dict(row) for row in rows]


def mark_relayed(database: Database, event_ids: Iterable[str]) -> None:
    """Count one more relay of each event, now."""
    with database.session() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.event_id.in_(list(event_ids)))
                        .values(relays=OutboxEvent.relays + 1, relayed_at=utcnow()))


def mark_delivered(database: Database, event_id: str) -> None:
    """Mark an event delivered (no-op for an event that never went through the outbox)."""
    with database.session() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.event_id == event_id,
                                                  OutboxEvent.delivered_at.is_(None)).values(delivered_at=utcnow()))


def get_outbox_event(database: Database, event_id: str) -> dict[str, Any] | None:
    """One outbox row as a dict, or None."""
    with database.session() as session:
        row = session.scalars(_rows([event_id])).first()
        return _as_dict(row) if row is not None else None
