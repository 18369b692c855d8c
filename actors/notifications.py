"""Notification actor (``notifications``): an inbox row, then e-mail and webhook, once per event and channel.

An actor that records a user-visible outcome builds its event with ``outbox_event(...)``,
passes it to the store function that records the outcome (the event row commits in the same
transaction: the outbox) and then calls ``relay_events(ids)``; the periodic ``relay_events``
actor relays whatever that missed (Redis down after the commit, a crash in between).
``send_event(...)`` enqueues directly, for events that announce no recorded outcome. Each channel's delivery
is claimed through its ``(event_id, channel)`` row before sending, so a redelivered or
retried message never sends twice; a transient failure on one channel retries the message
(channels already sent are skipped), a permanent one is recorded and not retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

import dramatiq
import structlog
from periodiq import cron
from pydantic import Field, StringConstraints, model_validator
from redis.exceptions import RedisError

from actors.platform.base import Payload, job_actor, validate_payload
from actors.platform.context import JobContext
from actors.platform.errors import TransientError
from actors.store.db import Database, get_database
from actors.store.models import utcnow
from actors.store.notifications import (
    channel_paused,
    claim_delivery,
    finish_delivery,
    preference_enabled,
    record_channel_result,
    write_inbox,
)
from actors.store.outbox import due_events, mark_delivered, mark_relayed
from config.queues import policy_for
from config.settings import Settings, get_settings, mask_secrets
from pipeline.errors import DeliveryRefused, DeliveryTransient, EventInvalid
from pipeline.notify.email import SmtpConfig, send_email
from pipeline.notify.events import CHANNELS, EventPayload, default_enabled, event_link, parse_event
from pipeline.notify.templates import Rendered, render, webhook_body
from pipeline.notify.webhook import WebhookConfig, post_webhook

__all__ = ["Notify", "RelayEvents", "deliver", "notify", "outbox_event", "relay_events", "relay_now", "send_event"]

log = structlog.get_logger("pfd.notify")

EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")]


class Notify(Payload):
    """Payload of ``notify``: an event type and its typed payload, for one user."""

    event: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    event_id: EventId | None = None
    user: UserName = "default"

    @model_validator(mode="before")
    @classmethod
    def _typed_payload(cls, data: Any) -> Any:
        """Check the payload against its event's schema and keep its normalised form."""
        if isinstance(data, dict) and isinstance(data.get("event"), str) and isinstance(data.get("payload", {}), dict):
            try:
                typed = parse_event(data["event"], data.get("payload", {}))
            except EventInvalid as exc:
                raise ValueError(str(exc)) from None
            data = {**data, "payload": typed.model_dump(mode="json")}
        return data


@job_actor(schema=Notify)
def notify(payload: Notify, job: JobContext) -> dict:
    """Deliver one event; the event id defaults to one derived from the message id."""
    settings = get_settings()
    database = get_database(settings.database_url)
    event_id = payload.event_id or f"ev-{job.message_id}"
    result = deliver(payload, settings, database, event_id=event_id,
                     last_attempt=job.attempt > policy_for("notify").max_retries)
    # Every channel is final now: the outbox's sweep leaves this event alone.
    mark_delivered(database, event_id)
    return result


def send_event(
    event: str, payload: dict[str, Any], user: str = "default", *, event_id: str | None = None
) -> dramatiq.Message:
    """Validate an event and enqueue its notification; raises ``PayloadInvalid`` when it is not valid."""
    kwargs: dict[str, Any] = {"event": event, "payload": payload, "user": user}
    if event_id is not None:
        kwargs["event_id"] = event_id
    return notify.send(**kwargs)


def outbox_event(
    event: str, payload: dict[str, Any], user: str = "default", *, event_id: str | None = None
) -> dict[str, Any]:
    """Validate an event for the outbox and return its row (a stable ``event_id`` if none is given).

    Raises ``PayloadInvalid`` when the event is not valid: before anything is recorded.
    """
    checked = validate_payload("notify", Notify, {"event": event, "payload": payload, "user": user, "event_id": event_id})
    return {"event_id": checked.event_id or f"{event}:{uuid.uuid4().hex}"[:64], "event": checked.event,
            "payload": checked.payload, "user": checked.user}


def _relay(database: Database, events: list[dict[str, Any]]) -> int:
    """Enqueue ``notify`` for each event and count the relay; return how many went out."""
    relayed = []
    try:
        for event in events:
            notify.send(event=event["event"], payload=event["payload"], user=event["user"],
                        event_id=event["event_id"])
            relayed.append(event["event_id"])
    finally:
        if relayed:
            mark_relayed(database, relayed)
    return len(relayed)


def relay_now(event_ids: list[str]) -> None:
    """Relay just-committed outbox events at once; an outage is logged and left to the sweep.

    Never raises for Redis: the outcome and its events are committed, and a retry of the
    calling job would find its work done and return early, so the sweep delivers them.
    """
    settings = get_settings()
    database = get_database(settings.database_url)
    try:
        _relay(database, due_events(database, event_ids=event_ids, settle_s=0, resend_after_s=0, max_relays=1))
    except (RedisError, dramatiq.errors.DramatiqError) as exc:
        log.warning("outbox.relay_deferred", event_ids=event_ids, error=mask_secrets(str(exc)))


class RelayEvents(Payload):
    """Payload of ``relay_events``: at most ``limit`` events a run."""

    limit: int = Field(500, ge=1, le=10_000)


@job_actor(schema=RelayEvents, periodic=cron(get_settings().schedule_relay_events))
def relay_events(payload: RelayEvents, job: JobContext) -> dict:
    """Relay outbox events that no one relayed after their commit, or whose relay was lost."""
    settings = get_settings()
    database = get_database(settings.database_url)
    due = due_events(database, settle_s=settings.outbox_settle_s, resend_after_s=settings.outbox_resend_after_s,
                     max_relays=settings.outbox_max_relays, limit=payload.limit)
    relayed = _relay(database, due)
    if relayed:
        log.info("outbox.relayed", count=relayed, event_ids=[e["event_id"] for e in due][:20])
    return {"relayed": relayed}


def deliver(
    notification: Notify, settings: Settings, database: Database, *, event_id: str, last_attempt: bool = False
) -> dict[str, Any]:
    """Write the inbox row and deliver on every enabled channel that has not delivered yet.

    Returns each channel's outcome and the channels now paused. Raises ``TransientError``
    when a channel should be tried again (after the others were delivered).
    """
    event = parse_event(notification.event, notification.payload)
    link = event_link(settings.dashboard_url, event)
    rendered = render(notification.event, event, link, event_id=event_id)
    new = write_inbox(
        database, event_id=event_id, user=notification.user, event_type=notification.event,
        subject=rendered.subject, body=rendered.body, link=link, payload=notification.payload,
    )
    senders = {
        "email": _email_sender(settings, notification.user, rendered, event_id),
        "webhook": _webhook_sender(settings, notification, event, rendered, link, event_id),
    }
    outcomes: dict[str, str] = {}
    errors: dict[str, str] = {}
    holder = uuid.uuid4().hex
    for channel in CHANNELS:
        send = senders[channel]
        if isinstance(send, str):
            outcomes[channel] = send
        elif not preference_enabled(
            database, notification.user, notification.event, channel,
            default=default_enabled(notification.event, channel),
        ):
            outcomes[channel] = "off"
        else:
            outcomes[channel], errors[channel] = _deliver_on(
                channel, send, settings, database, notification, event_id, holder, last_attempt
            )
    result = {
        "event_id": event_id, "event": notification.event, "user": notification.user, "link": link,
        "inbox": "written" if new else "exists", "channels": outcomes,
        "paused_channels": sorted(c for c, state in outcomes.items() if state == "paused"),
    }
    log.info("notify.outcome", event_type=notification.event, event_id=event_id, channels=outcomes)
    again = {c: errors[c] for c, state in outcomes.items() if state in ("retrying", "busy")}
    if again:
        raise TransientError(
            f"notification {event_id} will be tried again on " + "; ".join(f"{c}: {e}" for c, e in again.items())
        )
    return result


def _deliver_on(
    channel: str, send: Callable[[], object], settings: Settings, database: Database, notification: Notify,
    event_id: str, holder: str, last_attempt: bool,
) -> tuple[str, str]:
    """Claim, send and record one channel; return its outcome and the error, if any."""
    claim = claim_delivery(
        database, event_id=event_id, channel=channel, user=notification.user, event_type=notification.event,
        holder=holder, lease_s=policy_for("notify").time_limit_ms / 1000,
    )
    if claim.busy:
        return "busy", "another worker is sending it now"
    if not claim.acquired:
        return claim.state, ""
    state, error = "sent", ""
    try:
        if channel_paused(database, channel, pause_s=settings.notify_channel_pause_s):
            state, error = "paused", f"the {channel} channel is paused after repeated failures"
        else:
            send()
    except DeliveryRefused as exc:
        state, error = "failed", mask_secrets(str(exc))
    except DeliveryTransient as exc:
        state, error = ("failed" if last_attempt else "retrying"), mask_secrets(str(exc))
    except BaseException as exc:
        # A bug or the time limit: give the lease back so a later attempt can take over.
        finish_delivery(database, event_id=event_id, channel=channel, holder=holder, state="retrying",
                        error=mask_secrets(f"{type(exc).__name__}: {exc}"))
        raise
    if state in ("sent", "failed", "retrying"):
        health = record_channel_result(
            database, channel, ok=state == "sent", error=error or None,
            failure_limit=settings.notify_channel_failure_limit,
        )
        if health["paused"] and state != "sent":
            state = "paused"
            log.warning("notify.channel_paused", channel=channel, failures=health["consecutive_failures"], error=error)
    finish_delivery(database, event_id=event_id, channel=channel, holder=holder, state=state, error=error or None)
    if state != "sent":
        log.warning("notify.not_delivered", channel=channel, event_id=event_id, outcome=state, error=error)
    return state, error


def _recipients(settings: Settings, user: str) -> list[str]:
    addresses = settings.notify_user_emails.get(user, "")
    if not addresses and user == "default":
        addresses = settings.notify_email_to
    return [address.strip() for address in addresses.split(",") if address.strip()]


def _email_sender(settings: Settings, user: str, rendered: Rendered, event_id: str) -> Callable[[], object] | str:
    """The e-mail send for this event, or why there is none."""
    if not settings.smtp_host:
        return "not_configured"
    recipients = _recipients(settings, user)
    if not recipients:
        return "no_address"
    config = SmtpConfig(
        host=settings.smtp_host, port=settings.smtp_port, tls=settings.smtp_tls, sender=settings.smtp_from,
        user=settings.smtp_user, password=settings.smtp_password.get_secret_value(),
        timeout_s=settings.smtp_timeout_s, ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    )
    domain = settings.smtp_from.rpartition("@")[2] or "localhost"
    # A stable Message-ID lets a mail system drop a copy a lost reply made us send again.
    headers = {"Message-ID": f"<{event_id}.{user}@{domain}>", "X-PFD-Event-Id": event_id}
    return lambda: send_email(config, recipients, rendered.subject, rendered.body, headers=headers)


def _webhook_sender(
    settings: Settings, notification: Notify, event: EventPayload, rendered: Rendered, link: str, event_id: str
) -> Callable[[], object] | str:
    """The webhook POST for this event, or why there is none."""
    if not settings.webhook_url:
        return "not_configured"
    config = WebhookConfig(
        url=settings.webhook_url, secret=settings.webhook_secret.get_secret_value(), timeout_s=settings.webhook_timeout_s
    )
    document = webhook_body(
        notification.event, event, rendered, link, event_id=event_id, user=notification.user,
        sent_at=utcnow().isoformat(),
    )
    headers = {"X-PFD-Event": notification.event, "X-PFD-Delivery": event_id}
    return lambda: post_webhook(config, document, headers=headers)
