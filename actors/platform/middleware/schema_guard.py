"""Refuses to boot a worker on a database that is not at the newest migration."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware, MiddlewareError

from actors.platform.errors import DatabaseUnavailable, SchemaOutOfDate
from actors.store.db import Database, check_schema_at_head

__all__ = ["SchemaGuard"]


class SchemaGuard(Middleware):
    """Checks the schema once per worker process, before any thread takes a message."""

    def __init__(self, *, database: Callable[[], Database]) -> None:
        self._database = database

    def before_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Stop the worker's boot, naming the command to run, unless the schema is at head."""
        try:
            check_schema_at_head(self._database())
        except (SchemaOutOfDate, DatabaseUnavailable) as exc:
            structlog.get_logger("pfd.worker").error("worker.refused", reason=str(exc))
            # Dramatiq logs and ignores other errors raised by boot hooks; this one stops the boot.
            raise MiddlewareError(str(exc)) from exc
