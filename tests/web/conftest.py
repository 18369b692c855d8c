"""The dashboard under test: settings with one viewer and one operator (a password and a token each)."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from actors.web.auth import token_digest

PASSWORDS = {"vera": "viewer-pass", "otto": "operator-pass"}
TOKENS = {"viewer": "viewer-token-" + "v" * 24, "operator": "operator-token-" + "o" * 24}


def dashboard_env() -> dict[str, str]:
    """``PFD_DASHBOARD_*`` variables naming the test users and tokens (for a dashboard process)."""
    import json

    hasher = PasswordHasher()
    users = {"vera": {"role": "viewer", "password_hash": hasher.hash(PASSWORDS["vera"])},
             "otto": {"role": "operator", "password_hash": hasher.hash(PASSWORDS["otto"])}}
    tokens = {token_digest(token): {"name": f"{role}-service", "role": role} for role, token in TOKENS.items()}
    return {"PFD_DASHBOARD_USERS": json.dumps(users), "PFD_DASHBOARD_TOKENS": json.dumps(tokens),
            "PFD_DASHBOARD_SECRET_KEY": "test-secret-key-" + "k" * 32}


@pytest.fixture(scope="session")
def dashboard_settings():  # type: ignore[no-untyped-def]
    """Settings as a dashboard process reads them with ``dashboard_env()``."""
    import json

    from config.settings import Settings

    variables = dashboard_env()
    return Settings(dashboard_users=json.loads(variables["PFD_DASHBOARD_USERS"]),
                    dashboard_tokens=json.loads(variables["PFD_DASHBOARD_TOKENS"]),
                    dashboard_secret_key=variables["PFD_DASHBOARD_SECRET_KEY"])


@pytest.fixture
def client(app, dashboard_settings):  # type: ignore[no-untyped-def]
    """A client of the dashboard app, with no credentials; redirects are not followed."""
    from actors.web import create_app

    with TestClient(create_app(dashboard_settings, app.broker), follow_redirects=False) as test_client:
        yield test_client


def bearer(role: str) -> dict[str, str]:
    """The Authorization header of the test token for ``role``."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def sign_in(client: TestClient, name: str) -> str:
    """Sign ``client`` in as ``name`` through the login form; return the session's CSRF token."""
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf_token": csrf, "next": "/"})
    assert answer.status_code == 303, answer.text
    home = client.get("/")
    return re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
