"""Control actors (``high_priority``): quick work that must never wait behind long jobs."""

from __future__ import annotations

from pydantic import Field

from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.jobs import job_store

__all__ = ["CancelJob", "cancel_job"]


class CancelJob(Payload):
    """Payload of ``cancel_job``."""

    message_id: str = Field(min_length=1, max_length=64)


@job_actor(schema=CancelJob)
def cancel_job(payload: CancelJob, job: JobContext) -> dict:
    """Cancel a job from a worker (for callers that can only send messages)."""
    return job_store().request_cancel(payload.message_id).to_dict()
