"""Who is asking, and may they: sign-in, bearer tokens, roles and CSRF tokens.

Users sign in with a password checked against its Argon2 hash from settings and get a
signed session cookie (Starlette's sessions, signed by itsdangerous); services send a
bearer token whose SHA-256 digest is in settings. Viewers read; operators also act. A
state-changing request carried by the session cookie must also carry the session's CSRF
token (a form field, or the ``X-CSRF-Token`` header); a bearer token is not sent by a
browser on its own, so it needs none.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status

from config.settings import Settings

__all__ = [
    "Identity", "api_identity", "check_csrf", "csrf_token", "identify", "operator_identity",
    "sign_in", "token_digest", "verify_password",
]

_hasher = PasswordHasher()
# Checked when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Identity:
    """A signed-in user or a token's holder, with their role."""

    name: str
    role: str
    by_token: bool = False

    @property
    def operator(self) -> bool:
        """True for operators, who may act as well as read."""
        return self.role == "operator"


def token_digest(token: str) -> str:
    """The SHA-256 hex digest of a bearer token, as ``PFD_DASHBOARD_TOKENS`` keys it."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify_password(settings: Settings, name: str, password: str) -> Identity | None:
    """The user ``name`` if ``password`` matches their hash, else None (in about the same time)."""
    user = settings.dashboard_users.get(name)
    stored = user.password_hash.get_secret_value() if user else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return Identity(name, user.role) if user else None


def sign_in(request: Request, identity: Identity) -> None:
    """Start a fresh session for ``identity`` (a new CSRF token; nothing of the old one kept)."""
    request.session.clear()
    request.session["user"] = identity.name
    request.session["csrf"] = secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one too)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def identify(request: Request) -> Identity | None:
    """Who sent ``request``: a bearer token's holder, the session's user, or None.

    A session whose user has since been removed from settings no longer counts, and the
    role is always the one settings give now.
    """
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        holder = settings.dashboard_tokens.get(token_digest(header[7:].strip()))
        return Identity(holder.name, holder.role, by_token=True) if holder else None
    name = request.session.get("user")
    user = settings.dashboard_users.get(name) if name else None
    return Identity(name, user.role) if user else None


def check_csrf(request: Request, identity: Identity, submitted: str | None) -> None:
    """Refuse (403) a cookie-borne state change whose CSRF token is missing or wrong."""
    if identity.by_token or request.method in _SAFE_METHODS:
        return
    expected = request.session.get("csrf")
    if not expected or not submitted or not secrets.compare_digest(expected, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


def api_identity(request: Request) -> Identity:
    """FastAPI dependency: the caller, or 401; a state change also needs its CSRF token."""
    identity = identify(request)
    if identity is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "credentials required",
                            headers={"WWW-Authenticate": "Bearer"})
    check_csrf(request, identity, request.headers.get("x-csrf-token"))
    return identity


def operator_identity(request: Request) -> Identity:
    """FastAPI dependency: the caller if they are an operator; 401 without credentials, else 403."""
    identity = api_identity(request)
    if not identity.operator:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "operators only")
    return identity
