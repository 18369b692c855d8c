"""Dramatiq middleware of PFD Actors: job tracking, fan-out counting, log context, crash, schema and Redis
guards, shutdown, and the sweep of dead workers."""

from actors.platform.middleware.crash_guard import CrashGuard
from actors.platform.middleware.fanout_members import FanoutMembers
from actors.platform.middleware.logcontext import LogContext
from actors.platform.middleware.redis_guard import RedisGuard
from actors.platform.middleware.schema_guard import SchemaGuard
from actors.platform.middleware.shutdown import GracefulShutdown
from actors.platform.middleware.sweeper import Sweeper
from actors.platform.middleware.tracking import JobTracking

__all__ = ["CrashGuard", "FanoutMembers", "GracefulShutdown", "JobTracking", "LogContext", "RedisGuard", "SchemaGuard",
           "Sweeper"]
