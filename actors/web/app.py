"""The dashboard's ASGI app: pages, the JSON API and its OpenAPI document, all behind sign-in."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dramatiq
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from actors.web import api, pages, record_pages
from actors.web.auth import Identity, api_identity
from config.queues import QUEUES
from config.settings import Settings

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def create_app(settings: Settings, broker: dramatiq.Broker) -> FastAPI:
    """Build the dashboard for ``settings`` on ``broker`` (set up with every actor loaded).

    The OpenAPI document is served at ``/api/openapi.json`` to signed-in callers only; the
    static files (a style sheet and a script, no data) are the one thing served to anyone,
    because the sign-in page uses them.
    """
    app = FastAPI(title="PFD Actors dashboard API", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.broker, app.state.queues = settings, broker, QUEUES
    secret = settings.dashboard_secret_key.get_secret_value() or secrets.token_urlsafe(32)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="pfd_session",
                       max_age=settings.dashboard_session_max_age_s, same_site="strict")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(pages.signed_in)
    app.include_router(record_pages.records_router)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")

    @app.middleware("http")
    async def refuse_control_characters(request: Request, call_next):  # type: ignore[no-untyped-def]
        # No id, name or filter has one, and PostgreSQL refuses a NUL in text: say so at once.
        if _CONTROL.search(request.url.path) or any(_CONTROL.search(v) for v in request.query_params.values()):
            return JSONResponse({"detail": "control characters are not allowed in a path or query"}, status_code=400)
        return await call_next(request)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(_: Identity = Depends(api_identity)) -> dict[str, Any]:
        return app.openapi()

    @app.exception_handler(pages.LoginRequired)
    def to_login(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(404)
    def not_found(request: Request, exc: Exception) -> Response:
        # An unknown path says only that, signed in or not: it reveals no route or record.
        detail = getattr(exc, "detail", "not found")
        return JSONResponse({"detail": detail if _signed_in(request) else "not found"}, status_code=404)

    return app


def _signed_in(request: Request) -> bool:
    from actors.web.auth import identify

    return "session" in request.scope and identify(request) is not None
