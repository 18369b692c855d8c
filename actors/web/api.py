"""The JSON API under ``/api``: the reads and actions of ``pfd``, for services in any language.

Every route needs credentials (a bearer token, or a signed-in session plus its CSRF token
for a state change); sending, cancelling and dead-letter actions need an operator.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from dramatiq.errors import ActorNotFound
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from actors.platform.errors import JobNotFound, PayloadInvalid
from actors.web.auth import Identity, api_identity, operator_identity
from actors.web.live import overview_events, tree_events
from actors.web.reads import artifact_file, job_listing, known_queue, record_or_404, tree_or_404

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["api"])

JobState = Literal["queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled"]


class SendRequest(BaseModel):
    """A job to send: the actor's name and its payload (checked by the actor's schema)."""

    actor: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)


class RetryRequest(BaseModel):
    """Which dead letters to send again (default: every one of the queue)."""

    message_ids: list[str] | None = None


@router.get("/queues")
def queues(request: Request, _: Identity = Depends(api_identity)) -> dict[str, Any]:
    """Each queue's queued / in flight / delayed / dead counts and live workers, and recent activity."""
    from actors.platform.operations import queue_overview, recent_activity

    return {"queues": queue_overview(request.app.state.broker), "activity": recent_activity()}


@router.get("/queues/events")
def queue_events(request: Request, _: Identity = Depends(api_identity)) -> StreamingResponse:
    """Server-sent events: the queue overview, each time it changes."""
    return StreamingResponse(overview_events(request), media_type="text/event-stream")


@router.get("/jobs")
def jobs(
    request: Request,
    state: JobState | None = None,
    actor: str | None = Query(None, max_length=200),
    queue: str | None = Query(None, max_length=200),
    root: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
    _: Identity = Depends(api_identity),
) -> dict[str, Any]:
    """Recorded jobs, newest first, filtered by state, actor, queue, tree and time."""
    found = job_listing(state=state, actor=actor, queue=queue, root=root, since=since,
                        limit=limit, offset=offset)
    return {"jobs": [job.to_dict() for job in found], "limit": limit, "offset": offset}


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def send(request: Request, body: SendRequest, _: Identity = Depends(operator_identity)) -> dict[str, str]:
    """Send a job; its payload is validated by the actor's schema exactly as ``send()`` does (422)."""
    from actors.platform.operations import send_job

    try:
        message = send_job(request.app.state.broker, body.actor, body.payload)
    except PayloadInvalid as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except ActorNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown actor {body.actor!r}") from None
    return {"message_id": message.message_id, "actor": body.actor, "queue": message.queue_name}


@router.get("/jobs/{any_id}")
def job(any_id: str, _: Identity = Depends(api_identity)) -> dict[str, Any]:
    """The job (or record) ``any_id`` names and its whole tree, as ``pfd status --json`` gives it."""
    tree = tree_or_404(any_id)
    asked = next((node for node in tree.nodes if node.message_id == any_id), tree.root)
    return {"job": asked.to_dict(), "tree": tree.to_dict()}


@router.get("/jobs/{any_id}/events")
def job_events(any_id: str, request: Request, _: Identity = Depends(api_identity)) -> StreamingResponse:
    """Server-sent events: the tree of ``any_id`` each time it changes, until all of it ends."""
    tree_or_404(any_id)
    return StreamingResponse(tree_events(request, any_id), media_type="text/event-stream")


@router.post("/jobs/{message_id}/cancel")
def cancel(message_id: str, _: Identity = Depends(operator_identity)) -> dict[str, Any]:
    """Cancel a job: queued, it is skipped; running, it stops at its next check (409 once ended)."""
    from actors.platform.operations import cancel_unless_final

    try:
        outcome = cancel_unless_final(message_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if not outcome.requested:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {message_id} had already ended ({outcome.job.state})")
    return {"message_id": message_id, "state": outcome.job.state, "cancel_requested": True}


@router.post("/campaigns/{campaign_id}/{action}", status_code=status.HTTP_202_ACCEPTED)
def steer_campaign(
    campaign_id: str, action: Literal["stop", "resume"], request: Request, _: Identity = Depends(operator_identity),
) -> dict[str, str]:
    """Stop a campaign (running trials stop, queued ones are skipped) or resume a stopped one."""
    from actors.platform.operations import steer_campaign as steer

    campaign = record_or_404("campaigns", campaign_id)
    try:
        message = steer(request.app.state.broker, campaign["kind"], campaign_id, action)
    except PayloadInvalid as exc:  # e.g. a resume the campaign's state refuses at send
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return {"message_id": message.message_id, "campaign_id": campaign_id, "action": action}


@router.get("/dead-letters")
def dead_letters(
    request: Request, queue: str | None = Query(None, max_length=200), limit: int = Query(50, ge=1, le=1000),
    identity: Identity = Depends(api_identity),
) -> dict[str, Any]:
    """Dead-lettered messages (one queue, or all), newest first, with why each failed.

    Tracebacks are for operators: a viewer's answer has them empty.
    """
    from actors.platform.operations import dead_letters_explained

    letters = dead_letters_explained(request.app.state.broker, known_queue(queue) if queue else None, limit=limit)
    return {"dead_letters": [{**asdict(letter), "traceback": letter.traceback if identity.operator else ""}
                             for letter in letters]}


@router.post("/dead-letters/{queue}/retry")
def retry_dead_letters(
    queue: str, request: Request, body: RetryRequest | None = None, _: Identity = Depends(operator_identity),
) -> dict[str, Any]:
    """Send dead letters of ``queue`` again (listed ids, or all); their jobs go back to queued."""
    from actors.platform.dead_letters import requeue_dead_letters

    wanted = set(body.message_ids) if body and body.message_ids else None
    requeued = requeue_dead_letters(request.app.state.broker, known_queue(queue), wanted)
    return {"queue": queue, "requeued": requeued}


@router.post("/dead-letters/{queue}/purge")
def purge_dead_letters(queue: str, request: Request, _: Identity = Depends(operator_identity)) -> dict[str, Any]:
    """Delete every dead letter of ``queue`` for good."""
    from actors.platform.dead_letters import purge_dead_letters as purge

    return {"queue": queue, "purged": purge(request.app.state.broker.client, known_queue(queue))}


@router.get("/records/{kind}")
def records(
    kind: str, request: Request, status_: str | None = Query(None, alias="status", max_length=100),
    limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
    _: Identity = Depends(api_identity),
) -> dict[str, Any]:
    """Domain records of one kind (datasets, experiments, campaigns, ...), newest first."""
    from actors.platform.jobs import job_store
    from actors.store.listings import RECORD_KINDS, list_records

    if kind not in RECORD_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no record kind {kind!r}; known: {', '.join(RECORD_KINDS)}")
    return {"records": list_records(job_store().database, kind, status=status_, limit=limit, offset=offset)}


@router.get("/records/{kind}/{record_id}")
def record(kind: str, record_id: str, _: Identity = Depends(api_identity)) -> dict[str, Any]:
    """One domain record in full."""
    return {"record": record_or_404(kind, record_id)}


@router.get("/artifacts/{path:path}")
def artifact(path: str, request: Request, _: Identity = Depends(api_identity)) -> FileResponse:
    """A file an actor wrote (a plot, a report), by its path under the artifact root (404 outside it)."""
    return FileResponse(artifact_file(request.app.state.settings, path))

