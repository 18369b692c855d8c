"""Migration 0005 (feature sets, analyses) upgrades and downgrades on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from actors.store.db import migrate
from tests import env
from tests.conftest import recreate_pg_database

MINE = {"feature_sets", "analyses"}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'eval-migrations.sqlite3'}"
        return
    name = f"pfd_test_eval_migrations_{os.getpid()}"  # one per session: runs side by side never collide
    yield recreate_pg_database(name)
    with psycopg.connect(env.PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0005_creates_and_drops_only_its_own_tables(database_url):
    migrate(database_url, "0004")
    before = _tables(database_url)
    assert not MINE & before
    migrate(database_url, "0005")
    assert _tables(database_url) == before | MINE
    migrate(database_url, "0004", direction="downgrade")
    assert _tables(database_url) == before
    migrate(database_url, "head")
    assert MINE <= _tables(database_url)
