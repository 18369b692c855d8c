"""Migrations upgrade and downgrade on SQLite and on the PostgreSQL service."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from actors.platform.errors import SchemaOutOfDate
from actors.store.db import Database, check_schema_at_head, head_revision, migrate
from tests.conftest import recreate_pg_database

TABLES = {"jobs", "datasets", "dataset_imports"}


def _run(url: str, direction: str, revision: str) -> None:
    migrate(url, revision, direction=direction)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    return recreate_pg_database("pfd_test_migrations")


def test_migrations_upgrade_to_head_and_downgrade_to_nothing(empty_database_url):
    _run(empty_database_url, "upgrade", "head")
    assert TABLES <= _tables(empty_database_url)
    check_schema_at_head(Database(empty_database_url))
    _run(empty_database_url, "downgrade", "base")
    assert _tables(empty_database_url) == set()
    _run(empty_database_url, "upgrade", "head")
    assert TABLES <= _tables(empty_database_url)


def test_schema_check_names_the_command_to_run_on_an_old_database(empty_database_url):
    with pytest.raises(SchemaOutOfDate, match=r"at revision none, the code needs .*alembic upgrade head"):
        check_schema_at_head(Database(empty_database_url))
    assert head_revision()


def _window_nullable(url: str) -> bool:
    engine = create_engine(url)
    try:
        return next(c for c in inspect(engine).get_columns("explanations") if c["name"] == "window")["nullable"]
    finally:
        engine.dispose()


def test_migration_0010_lets_an_explanation_name_a_whole_record_and_downgrades(empty_database_url):
    _run(empty_database_url, "upgrade", "0009")
    assert _window_nullable(empty_database_url) is False
    _run(empty_database_url, "upgrade", "0010")
    assert _window_nullable(empty_database_url) is True
    _run(empty_database_url, "downgrade", "0009")
    assert _window_nullable(empty_database_url) is False
