"""Dramatiq middleware of PFD Actors: job tracking, log context and the schema guard."""

from actors.middleware.logcontext import LogContext
from actors.middleware.schema_guard import SchemaGuard
from actors.middleware.shutdown import GracefulShutdown
from actors.middleware.tracking import JobTracking

__all__ = ["GracefulShutdown", "JobTracking", "LogContext", "SchemaGuard"]
