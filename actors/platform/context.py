"""The running job as an actor sees it: progress reports, cancellation and the deadline."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.store.jobs import JobStore

__all__ = [
    "PARENT_OPTION", "ROOT_OPTION", "JobContext", "bind_job", "current_job", "lineage_options", "unbind_job",
]

# A running job logs its progress at most this often, plus at each new milestone.
PROGRESS_LOG_INTERVAL_S = 10.0
_MILESTONES = ("epoch", "trial", "stage", "wave", "candidate")

_log = structlog.get_logger("pfd.jobs")

# Message options that place a job in its tree: the job that sent it, and the tree's root.
PARENT_OPTION = "pfd_parent_id"
ROOT_OPTION = "pfd_root_id"

_local = threading.local()


@dataclass
class JobContext:
    """One message being processed; ``progress`` and ``should_stop`` feed ``pipeline`` calls."""

    message_id: str
    actor: str
    queue: str
    attempt: int
    store: JobStore | None = None
    deadline: float | None = None
    fanout_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    cancel_seen: bool = False
    outcome: str | None = None
    started: float = field(default_factory=time.monotonic)
    # The fields that say this attempt runs, until they reach the store ("announced").
    start_fields: dict[str, Any] | None = None
    announced: bool = False
    cancel_check: Callable[[], bool] | None = None
    error: BaseException | None = None
    on_member_progress: Callable[[float], None] | None = None
    _last_progress_log: float = field(default=-math.inf, repr=False)
    _last_milestone: dict[str, Any] = field(default_factory=dict, repr=False)

    def progress(self, fraction: float, status: str = "", **metrics: Any) -> None:
        """Record progress (0..1); also learns of a cancel request at once.

        Also a ``job.progress`` log line, at most every ``PROGRESS_LOG_INTERVAL_S`` and at every
        new epoch, trial or stage, so a log reader follows long work without a line per batch.
        """
        self._log_progress(fraction, status, metrics)
        if self.store is None:
            return
        start = None if self.announced else self.start_fields
        if self.store.progress(self.message_id, fraction, status, _json_safe(metrics), start=start):
            self.cancel_seen = True
        self.announced = True  # only once written: a report that failed leaves the start to a later one
        if self.on_member_progress is not None:
            self.on_member_progress(fraction)

    def _log_progress(self, fraction: float, status: str, metrics: dict[str, Any]) -> None:
        now = time.monotonic()
        milestone = {key: metrics[key] for key in _MILESTONES if key in metrics}
        if milestone == self._last_milestone and now - self._last_progress_log < PROGRESS_LOG_INTERVAL_S:
            return
        self._last_milestone, self._last_progress_log = milestone, now
        _log.info("job.progress", progress=round(float(fraction), 4), status=status[:200], **_json_safe(metrics))

    def fail(self, error: BaseException) -> None:
        """End the job ``failed`` with ``error`` without raising (no retry, no dead letter).

        For fan-out members: a member that fails on its own domain error must return
        normally, or Dramatiq never fires the group's completion callback.
        """
        self.outcome = "failed"
        self.error = error

    def should_stop(self) -> bool:
        """True when the job was cancelled or its deadline passed."""
        if self.deadline_passed:
            return True
        if not self.cancel_seen and self.cancel_check is not None:
            self.cancel_seen = self.cancel_check()
        return self.cancel_seen

    @property
    def deadline_passed(self) -> bool:
        """True when the cooperative deadline (just before the hard time limit) has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        safe[key] = value if isinstance(value, (int, float, str, bool, type(None), list, dict)) else str(value)
    return safe


def lineage_options(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options that make a message a child of this thread's tracked job (none outside one).

    Sends from inside a job are stamped by the tracking middleware on their own; this is for
    messages built now and enqueued later by Dramatiq (a pipeline's stages, a group's
    completion callback), when the sending job is no longer the thread's current one.
    """
    context = getattr(_local, "job", None)
    if context is None or (options and options.get(ROOT_OPTION)):
        return {}
    return {PARENT_OPTION: context.message_id, ROOT_OPTION: context.root_id or context.message_id}


def bind_job(context: JobContext) -> None:
    """Make ``context`` the current job of this thread."""
    _local.job = context


def unbind_job() -> JobContext | None:
    """Forget this thread's current job and return it."""
    context = getattr(_local, "job", None)
    _local.job = None
    return context


def current_job() -> JobContext:
    """Return this thread's job, or a detached one (no store) outside a tracked worker."""
    context = getattr(_local, "job", None)
    if context is None:
        from dramatiq.middleware import CurrentMessage

        message = CurrentMessage.get_current_message()
        context = JobContext(
            message_id=message.message_id if message else "direct-call",
            actor=message.actor_name if message else "",
            queue=message.queue_name if message else "",
            attempt=1 + (message.options.get("retries", 0) if message else 0),
        )
    return context
