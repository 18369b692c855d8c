"""Engine, the one session scope, and the schema-at-head check."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from actors.platform.errors import DatabaseUnavailable, SchemaOutOfDate, StoreError
from config.settings import mask_secrets

__all__ = ["ALEMBIC_DIR", "Database", "check_schema_at_head", "get_database", "head_revision", "migrate"]

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


class Database:
    """One engine and session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(url, pool_pre_ping=True, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session that commits on success, rolls back on error and always closes.

        Driver errors become ``DatabaseUnavailable`` (retried) or ``StoreError`` (not).
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DisconnectionError) as exc:
            session.rollback()
            raise DatabaseUnavailable(mask_secrets(f"database unavailable: {exc.orig or exc}")) from exc
        except DBAPIError as exc:
            session.rollback()
            if exc.connection_invalidated:
                raise DatabaseUnavailable(mask_secrets(f"database connection lost: {exc.orig}")) from exc
            raise StoreError(mask_secrets(f"database error: {exc.orig or exc}")) from exc
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(mask_secrets(f"database error: {exc}")) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection (after a fork, or at shutdown)."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets worker processes read while one writes; the busy timeout waits out a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@functools.lru_cache(maxsize=8)
def get_database(url: str) -> Database:
    """Return the process-wide ``Database`` for ``url``."""
    return Database(url)


def head_revision() -> str:
    """Return the newest Alembic revision in the project's migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise SchemaOutOfDate("no migrations found in " + str(ALEMBIC_DIR))
    return head


def check_schema_at_head(database: Database) -> None:
    """Raise ``SchemaOutOfDate`` with the command to run unless the database is at head."""
    from alembic.runtime.migration import MigrationContext

    head = head_revision()
    try:
        with database.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(mask_secrets(f"database unavailable: {exc.orig or exc}")) from exc
    if current != head:
        raise SchemaOutOfDate(
            f"database {mask_secrets(database.url)} is at revision {current or 'none'}, "
            f"the code needs {head}: run `make migrate` (alembic upgrade head) first"
        )


def migrate(url: str, revision: str = "head", *, direction: str = "upgrade") -> None:
    """Run the project's Alembic migrations on ``url`` (``upgrade`` or ``downgrade``)."""
    from alembic.config import Config

    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    getattr(command, direction)(config, revision)
