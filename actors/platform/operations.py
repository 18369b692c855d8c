"""What the people who run the work read and do, shared by the ``pfd`` command and the dashboard.

Each interface (terminal, web page, JSON API) calls these, so a queue overview, a dead
letter's reason, a send or a cancel means the same thing wherever it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import dramatiq

from actors.platform.dead_letters import DeadLetter, list_dead_letters
from actors.platform.errors import JobNotFound, PayloadInvalid
from actors.platform.jobs import get_job, job_store, request_cancel
from actors.platform.queue_depths import queue_depths
from actors.store.jobs import JobView
from config.queues import QUEUES

__all__ = [
    "CancelOutcome", "cancel_unless_final", "dead_letters_explained", "queue_overview", "recent_activity", "send_job",
    "steer_campaign",
]


def queue_overview(broker: dramatiq.Broker) -> list[dict[str, Any]]:
    """Each queue's depth (queued, in flight, delayed, dead) with its live workers (by heartbeat)."""
    depths = queue_depths(broker.client, QUEUES)  # type: ignore[attr-defined]
    workers = job_store().live_workers()
    return [{**depth.to_dict(), "workers": workers.get(depth.queue, [])} for depth in depths]


def recent_activity() -> dict[str, float | int]:
    """Jobs sent per minute (mean of the last 10 minutes) and failures among jobs sent in the last hour.

    Read from the recorded jobs (the recorder writes them within seconds).
    """
    from datetime import UTC, datetime, timedelta

    from actors.store.listings import job_counts

    now = datetime.now(UTC)
    last_hour = job_counts(job_store().database, since=now - timedelta(hours=1))
    last_ten = job_counts(job_store().database, since=now - timedelta(minutes=10))
    return {"jobs_per_minute": round(sum(last_ten.values()) / 10, 1),
            "failures_last_hour": sum(last_hour.get(state, 0) for state in ("failed", "timed_out")),
            "jobs_last_hour": sum(last_hour.values())}


def dead_letters_explained(broker: dramatiq.Broker, queue: str | None = None, *, limit: int = 50) -> list[DeadLetter]:
    """Dead letters of one queue (default: all), newest first, each with why its last attempt failed."""
    letters = [letter for q in ([queue] if queue else QUEUES)
               for letter in list_dead_letters(broker.client, q, limit=limit)]  # type: ignore[attr-defined]
    for i, letter in enumerate(letters):
        if letter.readable:
            # The job record says why the last attempt failed; Dramatiq's traceback, when it
            # kept one, may be an earlier attempt's.
            try:
                job = get_job(letter.message_id)
            except JobNotFound:
                continue
            if job.error_type:
                letters[i] = replace(letter, reason=f"{job.error_type}: {job.error_message}")
    return letters


def send_job(broker: dramatiq.Broker, actor: str, payload: object) -> dramatiq.Message:
    """Send ``payload`` to ``actor``, validated by its schema as ``send()`` does.

    Raises ``PayloadInvalid`` for a payload that is not a JSON object or fails the schema,
    and ``dramatiq.errors.ActorNotFound`` for an unknown actor.
    """
    if not isinstance(payload, dict):
        raise PayloadInvalid(f"the payload must be a JSON object, got {type(payload).__name__}")
    return broker.get_actor(actor).send(**payload)


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel found and did: the job as it is now, and whether a cancel was requested."""

    job: JobView
    requested: bool


def cancel_unless_final(message_id: str) -> CancelOutcome:
    """Cancel a job that has not ended (queued: skipped; running: stops at its next check).

    A job already final is left as it is (``requested`` False). Raises ``JobNotFound``.
    """
    before = get_job(message_id)
    if before.final:
        return CancelOutcome(before, requested=False)
    return CancelOutcome(request_cancel(message_id), requested=True)


def steer_campaign(broker: dramatiq.Broker, kind: str, campaign_id: str, action: str) -> dramatiq.Message:
    """Stop a campaign (``stop_<kind>_campaign``) or resume it (``run_<kind>_campaign``, ``resume``).

    ``kind`` is the campaign's own (``hpo``, ``nas``); raises ``PayloadInvalid`` for another
    action, and whatever ``send_job`` raises.
    """
    if action == "stop":
        return send_job(broker, f"stop_{kind}_campaign", {"campaign_id": campaign_id})
    if action == "resume":
        return send_job(broker, f"run_{kind}_campaign", {"campaign_id": campaign_id, "resume": True})
    raise PayloadInvalid(f"a campaign can be stopped or resumed, not {action!r}")
