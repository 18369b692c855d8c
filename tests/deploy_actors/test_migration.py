"""Migration 0007 (deployments) upgrades and downgrades on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from actors.store.db import migrate
from tests import env
from tests.conftest import recreate_pg_database


def _tables(url: str) -> dict[str, set[str]]:
    """Each table's columns."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {name: {c["name"] for c in inspector.get_columns(name)} for name in inspector.get_table_names()}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deploy-migrations.sqlite3'}"
        return
    name = f"pfd_test_deploy_migrations_{os.getpid()}"  # one per session: runs side by side never collide
    yield recreate_pg_database(name)
    with psycopg.connect(env.PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0007_creates_and_drops_only_the_deployments_table(database_url):
    from actors.store.deployments import Deployment

    migrate(database_url, "0006")
    before = _tables(database_url)
    assert "deployments" not in before
    migrate(database_url, "0007")
    after = _tables(database_url)
    assert after.pop("deployments") == {c.name for c in Deployment.__table__.columns}
    assert after == before
    migrate(database_url, "0006", direction="downgrade")
    assert _tables(database_url) == before
    migrate(database_url, "head")
    assert "deployments" in _tables(database_url)


def test_migration_0007_matches_the_deployment_model(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from actors.store.schema import Base

    migrate(database_url, "head")
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in diffs if "deployments" in str(d)] == []
