"""Dramatiq middleware of PFD Actors: job tracking, fan-out counting, log context, crash and schema guards, shutdown."""

from actors.middleware.crash_guard import CrashGuard
from actors.middleware.fanout_members import FanoutMembers
from actors.middleware.logcontext import LogContext
from actors.middleware.schema_guard import SchemaGuard
from actors.middleware.shutdown import GracefulShutdown
from actors.middleware.tracking import JobTracking

__all__ = ["CrashGuard", "FanoutMembers", "GracefulShutdown", "JobTracking", "LogContext", "SchemaGuard"]
