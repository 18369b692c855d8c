"""``pfd dashboard`` (the web dashboard and JSON API, a Procfile line) and ``pfd dashboard-credentials``."""

from __future__ import annotations

import json
import secrets

import typer

from actors.cli.common import app, load_broker


@app.command()
def dashboard(
    host: str | None = typer.Option(None, help="Address to bind (default PFD_DASHBOARD_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default PFD_DASHBOARD_PORT, 8088)."),
) -> None:
    """Serve the web dashboard and its JSON API (Procfile line); nothing is served without credentials."""
    import structlog
    import uvicorn

    from actors.web import create_app
    from config.logging import configure_logging
    from config.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    log = structlog.get_logger("pfd.dashboard")
    if not settings.dashboard_users and not settings.dashboard_tokens:
        log.warning("dashboard.no_credentials",
                    hint="nobody can sign in: set PFD_DASHBOARD_USERS (see `pfd dashboard-credentials`)")
    if not settings.dashboard_secret_key.get_secret_value():
        log.warning("dashboard.random_secret_key", hint="sessions end when it restarts: set PFD_DASHBOARD_SECRET_KEY")
    bind_host, bind_port = host or settings.dashboard_host, settings.dashboard_port if port is None else port
    log.info("dashboard.serving", url=f"http://{bind_host}:{bind_port}/")
    uvicorn.run(create_app(settings, load_broker()), host=bind_host, port=bind_port, log_config=None,
                access_log=False)


@app.command("dashboard-credentials")
def dashboard_credentials(
    name: str = typer.Argument(..., help="The user's (or the token holder's) name."),
    role: str = typer.Option("viewer", help="viewer (reads) or operator (also acts)."),
    token: bool = typer.Option(False, "--token", help="Make an API bearer token instead of a password entry."),
) -> None:
    """Print a settings entry for a dashboard user (asks the password) or a new API token.

    The password is stored only as its Argon2 hash, a token only as its SHA-256 digest:
    add the printed entry to PFD_DASHBOARD_USERS or PFD_DASHBOARD_TOKENS (JSON objects).
    """
    from argon2 import PasswordHasher

    from actors.web.auth import token_digest

    if role not in ("viewer", "operator"):
        raise typer.BadParameter(f"role must be viewer or operator, not {role!r}")
    if token:
        value = secrets.token_urlsafe(32)
        typer.echo(f"token (give it to the service; it is not stored): {value}")
        typer.echo("PFD_DASHBOARD_TOKENS entry: " + json.dumps({token_digest(value): {"name": name, "role": role}}))
        return
    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    entry = {name: {"role": role, "password_hash": PasswordHasher().hash(password)}}
    typer.echo("PFD_DASHBOARD_USERS entry: " + json.dumps(entry))
