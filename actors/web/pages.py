"""The HTML pages: sign-in, overview, jobs, one job's tree, dead letters and sending (records: ``record_pages``).

Pages read through the same functions as the API (``actors.web.reads``, the shared
operations); forms that change something are for operators and carry the session's CSRF
token. Without a session every page sends the browser to the sign-in page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dramatiq.errors import ActorNotFound
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from actors.platform.errors import JobNotFound, PayloadInvalid
from actors.web.auth import Identity, check_csrf, csrf_token, identify, sign_in, verify_password
from actors.web.reads import job_listing, known_queue, plot_paths, tree_or_404

__all__ = ["LoginRequired", "operator", "render", "router", "signed_in", "templates", "viewer"]

router = APIRouter(include_in_schema=False)  # the sign-in page only
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _timestamp(value: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS UTC`` (``-`` when there is none)."""
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


templates.env.filters["timestamp"] = _timestamp
JOB_STATES = ("queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled")


class LoginRequired(Exception):
    """Raised by a page asked for without a session; the app answers with the sign-in page."""


def viewer(request: Request) -> Identity:
    """The signed-in caller; raises ``LoginRequired`` (the app sends them to sign in) without a session."""
    identity = identify(request)
    if identity is None:
        raise LoginRequired()
    return identity


# Every other page: the session is checked before anything of the request is read, so a
# request without one is sent to sign in whatever its form or query holds.
signed_in = APIRouter(include_in_schema=False, dependencies=[Depends(viewer)])


def operator(request: Request, csrf: str | None) -> Identity:
    """The signed-in caller if an operator (else 403), with the form's CSRF token checked for a state change."""
    identity = viewer(request)
    if not identity.operator:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "operators only")
    check_csrf(request, identity, csrf)
    return identity


def render(request: Request, name: str, identity: Identity | None, **context: Any) -> HTMLResponse:
    """A template with the caller and the session's CSRF token in its context."""
    return templates.TemplateResponse(request, name, {"me": identity, "csrf": csrf_token(request), **context})


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html", None, next=next, error=None)


@router.post("/login")
def login(
    request: Request, username: str = Form(max_length=200), password: str = Form(max_length=1000),
    csrf_token_: str = Form("", alias="csrf_token"), next: str = Form("/"),
) -> Response:
    """Check the password and start a signed session; a wrong name or password says only that."""
    expected = request.session.get("csrf")
    if not expected or csrf_token_ != expected:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    identity = verify_password(request.app.state.settings, username, password)
    if identity is None:
        return render(request, "login.html", None, next=next, error="wrong user name or password")
    sign_in(request, identity)
    # Only a path of this site: never a redirect to another host.
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@signed_in.post("/logout")
def logout(request: Request, csrf_token_: str = Form("", alias="csrf_token")) -> Response:
    """End the session."""
    check_csrf(request, viewer(request), csrf_token_)
    request.session.clear()
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@signed_in.get("/")
def overview(request: Request) -> HTMLResponse:
    """Each queue's counts and live workers (kept live by server-sent events)."""
    from actors.platform.operations import queue_overview, recent_activity

    identity = viewer(request)
    return render(request, "overview.html", identity, queues=queue_overview(request.app.state.broker),
                 activity=recent_activity())


@signed_in.get("/jobs")
def jobs(
    request: Request, state: str = "", actor: str = "", queue: str = "", since: str = "", q: str = "", page: int = 1,
) -> Response:
    """Recorded jobs with filters; ``q`` (any id) opens that job's page."""
    identity = viewer(request)
    if q.strip():
        return RedirectResponse(f"/jobs/{quote(q.strip(), safe='')}", status.HTTP_303_SEE_OTHER)
    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{since!r} is not an ISO time") from None
    if state and state not in JOB_STATES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"no job state {state!r}")
    page = max(page, 1)
    found = job_listing(state=state, actor=actor, queue=queue, root=None, since=since_at,
                        limit=50, offset=(page - 1) * 50)
    filters = {"state": state, "actor": actor, "queue": queue, "since": since}
    return render(request, "jobs.html", identity, jobs=found, filters=filters, states=JOB_STATES, page=page)


@signed_in.get("/jobs/{any_id}")
def job(request: Request, any_id: str) -> HTMLResponse:
    """One job's tree with live progress bars, its timings, attempts, error and result."""
    identity = viewer(request)
    tree = tree_or_404(any_id)
    asked = next((node for node in tree.nodes if node.message_id == any_id), tree.root)
    depth = {}
    for node in tree.nodes:  # parents come before their children (sent first)
        depth[node.message_id] = depth.get(node.parent_id, -1) + 1 if node.message_id != tree.root_id else 0
    plots = plot_paths(request.app.state.settings, *(node.result for node in tree.nodes if node.result))
    traceback = ""
    if identity.operator and asked.error_type and asked.queue in request.app.state.queues:
        from actors.platform.dead_letters import list_dead_letters

        letters = list_dead_letters(request.app.state.broker.client, asked.queue, limit=1000)
        traceback = next((letter.traceback for letter in letters if letter.message_id == asked.message_id), "")
    log_lines = _log_lines(request.app.state.settings, {asked.message_id, tree.root_id})
    return render(request, "job.html", identity, tree=tree, job=asked, depth=depth, plots=plots, traceback=traceback,
                 log_lines=log_lines,
                 result_json=json.dumps(asked.result, indent=2, default=str) if asked.result else "")


# A page reads at most this much of each log file, and shows at most this many lines.
_LOG_TAIL_BYTES = 8 * 1024 * 1024
_LOG_LINES_SHOWN = 200


def _log_lines(settings: Any, ids: set[str]) -> list[str]:
    """The log lines (readable form) naming one of ``ids`` in the configured log files, oldest first."""
    from actors.platform.log_lines import matching_lines, render_line, tail_lines

    found = [(record.get("timestamp", ""), render_line(record))
             for path in settings.dashboard_log_files
             for _, record in matching_lines(tail_lines(path, max_bytes=_LOG_TAIL_BYTES), ids)]
    return [line for _, line in sorted(found)][-_LOG_LINES_SHOWN:]


@signed_in.post("/jobs/{message_id}/cancel")
def cancel(request: Request, message_id: str, csrf_token_: str = Form("", alias="csrf_token")) -> Response:
    """Cancel a job (operators), then show it again."""
    from actors.platform.operations import cancel_unless_final

    operator(request, csrf_token_)
    try:
        cancel_unless_final(message_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return RedirectResponse(f"/jobs/{quote(message_id, safe='')}", status.HTTP_303_SEE_OTHER)


@signed_in.get("/send")
def send_form(request: Request, actor: str = "") -> HTMLResponse:
    """Pick an actor and write its payload; the fields and defaults come from its schema."""
    identity = operator(request, None)
    return _sendrender(request, identity, actor, payload="", error=None)


def _sendrender(request: Request, identity: Identity, actor: str, *, payload: str, error: str | None) -> HTMLResponse:
    """The send form: every actor, and the chosen one's payload fields with a payload of its defaults."""
    from actors.platform.catalog import actor_catalog, actor_schema

    broker = request.app.state.broker
    chosen = actor_schema(broker, actor) if actor in broker.actors else None
    if chosen and not payload:
        defaults = {f["name"]: f["default"] for f in chosen["fields"]
                    if "." not in f["name"] and not f["required"] and f["default"] is not None}
        payload = json.dumps(defaults, indent=2, default=str)
    return render(request, "send.html", identity, catalog=actor_catalog(broker), chosen=chosen, error=error,
                 payload=payload or "{}")


@signed_in.post("/send")
def send(
    request: Request, actor: str = Form(max_length=200), payload: str = Form("{}", max_length=100_000),
    csrf_token_: str = Form("", alias="csrf_token"),
) -> Response:
    """Send a job validated as ``send()`` validates it; a bad payload is shown with what is wrong."""
    from actors.platform.operations import send_job

    identity = operator(request, csrf_token_)
    try:
        message = send_job(request.app.state.broker, actor, json.loads(payload))
    except (json.JSONDecodeError, PayloadInvalid, ActorNotFound) as exc:
        error = f"unknown actor {actor!r}" if isinstance(exc, ActorNotFound) else str(exc)
        response = _sendrender(request, identity, actor, payload=payload, error=error)
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return response
    return RedirectResponse(f"/jobs/{message.message_id}", status.HTTP_303_SEE_OTHER)


@signed_in.get("/dead-letters")
def dead_letters(request: Request) -> HTMLResponse:
    """Dead-lettered messages of every queue, with why each failed."""
    from actors.platform.operations import dead_letters_explained

    identity = viewer(request)
    return render(request, "dead_letters.html", identity,
                 letters=dead_letters_explained(request.app.state.broker), queues=request.app.state.queues)


@signed_in.post("/dead-letters/{queue}/{action}")
def dead_letter_action(
    request: Request, queue: str, action: str, csrf_token_: str = Form("", alias="csrf_token"),
    confirm: str = Form(""),
) -> Response:
    """Retry or purge a queue's dead letters (operators; purging needs the confirmation box ticked)."""
    from actors.platform.dead_letters import purge_dead_letters, requeue_dead_letters

    operator(request, csrf_token_)
    known_queue(queue)
    if action == "retry":
        requeue_dead_letters(request.app.state.broker, queue, None)
    elif action == "purge":
        if confirm != "yes":
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "tick the box to confirm deleting dead letters for good")
        purge_dead_letters(request.app.state.broker.client, queue)
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead-letter action {action!r}")
    return RedirectResponse("/dead-letters", status.HTTP_303_SEE_OTHER)
