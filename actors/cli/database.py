"""``pfd db``: the database schema."""

from __future__ import annotations

import typer

from actors.cli.common import app, console

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest migration (alembic upgrade head)."""
    from actors.store.db import migrate
    from config.settings import get_settings

    migrate(get_settings().database_url)
    console.print(f"database {get_settings().masked('database_url')} is at head")
