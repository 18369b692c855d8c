"""Errors raised by the actor layer: one base class and one class per failure."""

from __future__ import annotations

__all__ = [
    "ActorError",
    "DatabaseUnavailable",
    "JobNotFound",
    "JobTimedOut",
    "PayloadInvalid",
    "RecordConflict",
    "RecordNotFound",
    "SchemaOutOfDate",
    "StoreError",
    "TransientError",
    "WorkerCrashLoop",
]


class ActorError(Exception):
    """Base class of every error raised by ``actors``."""


class PayloadInvalid(ActorError, ValueError):
    """Raised when a message payload fails its schema; never retried."""


class TransientError(ActorError):
    """Raised for faults that may pass (a service briefly unreachable); always retried."""


class DatabaseUnavailable(TransientError):
    """Raised when the database cannot be reached or refuses a connection."""


class StoreError(ActorError):
    """Raised when the database rejects an operation for a reason a retry will not fix."""


class SchemaOutOfDate(ActorError):
    """Raised when the database is not at the newest migration."""


class RecordNotFound(ActorError, LookupError):
    """Raised when a domain record a payload names does not exist."""


class RecordConflict(ActorError):
    """Raised when a domain record is claimed by another job."""


class JobTimedOut(ActorError):
    """Raised when a job passes its time limit at a cooperative check; never retried."""


class JobNotFound(ActorError, LookupError):
    """Raised when no job has the given message id."""


class WorkerCrashLoop(ActorError):
    """Raised for a message whose every start killed its worker process; dead-lettered, never retried."""
