"""Records every message's state transitions, attempts, timings and errors.

Hooks run in the order Dramatiq gives them: this middleware sits before ``Retries`` in the
broker's list, so its ``after_process_message`` runs after Retries has decided; a job is
marked ``failed`` only when ``message.failed`` says no retry follows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware, SkipMessage, TimeLimitExceeded

from actors.context import JobContext, bind_job, unbind_job
from actors.errors import JobTimedOut
from actors.store.jobs import JobStore
from config.settings import mask_secrets

__all__ = ["JobTracking"]

log = structlog.get_logger("pfd.jobs")

# The cooperative deadline comes this long before the hard time limit, so long work can
# stop cleanly and record why before Dramatiq's asynchronous exception arrives.
_DEADLINE_MARGIN_S = 1.0


class JobTracking(Middleware):
    """Keeps one job record per message, live in Redis and flushed to the database."""

    def __init__(
        self,
        *,
        store: Callable[[], JobStore],
        flush_interval_s: float = 0.5,
        flush_batch: int = 500,
        heartbeat_s: float = 2.0,
    ) -> None:
        self._store = store
        self.flush_interval_s = flush_interval_s
        self.flush_batch = flush_batch
        self.heartbeat_s = heartbeat_s
        self.worker_name = ""
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    @property
    def store(self) -> JobStore:
        """The job store of this process."""
        return self._store()

    def before_enqueue(self, broker, message, delay):  # type: ignore[no-untyped-def]
        """Record a new message as queued (a retry was already recorded as retrying)."""
        if message.options.get("retries"):
            return
        self.store.enqueued(
            message.message_id,
            message.actor_name,
            message.queue_name.removesuffix(".DQ"),
            fanout_id=message.options.get("pfd_fanout_id"),
        )

    def before_process_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Record the start; skip a message whose job was cancelled while it waited."""
        queue = message.queue_name.removesuffix(".DQ")
        attempt = 1 + message.options.get("retries", 0)
        cancelled = self.store.started(
            message.message_id, message.actor_name, queue, attempt=attempt, worker=self.worker_name
        )
        limit_ms = message.options.get("time_limit") or broker.get_actor(message.actor_name).options.get("time_limit")
        context = JobContext(
            message_id=message.message_id,
            actor=message.actor_name,
            queue=queue,
            attempt=attempt,
            store=self.store,
            deadline=time.monotonic() + limit_ms / 1000 - _DEADLINE_MARGIN_S if limit_ms else None,
            fanout_id=message.options.get("pfd_fanout_id"),
        )
        bind_job(context)
        if cancelled:
            raise SkipMessage("cancelled before it started")

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Record the attempt's outcome and write the job's one log line."""
        context = unbind_job()
        duration_ms = (time.monotonic() - context.started) * 1000 if context else 0.0
        if exception is None:
            state = (context.outcome if context else None) or "succeeded"
        elif isinstance(exception, (TimeLimitExceeded, JobTimedOut)):
            state = "timed_out"
        elif message.failed:
            state = "failed"
        else:
            state = "retrying"
        error_message = mask_secrets(str(exception) or type(exception).__name__) if exception else None
        if isinstance(exception, TimeLimitExceeded):
            error_message = "the job passed its time limit"
        try:
            self.store.finished(
                message.message_id, state, duration_ms=duration_ms, error=exception,
                error_message=error_message, result=result,
            )
        except Exception as exc:  # an after-hook must never raise; the broker would only log it
            log.error("job.record_failed", outcome=state, error=mask_secrets(str(exc)))
        fields = {"outcome": state, "duration_ms": round(duration_ms, 3)}
        if exception is not None:
            fields.update(error_type=type(exception).__name__, error=error_message)
        (log.info if state in ("succeeded", "cancelled") else log.warning)("job.finished", **fields)

    def after_skip_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Record a skipped message (cancelled before it ran) as cancelled."""
        context = unbind_job()
        try:
            self.store.finished(message.message_id, "cancelled", duration_ms=0.0)
        except Exception as exc:  # an after-hook must never raise
            log.error("job.record_failed", outcome="cancelled", error=mask_secrets(str(exc)))
        log.info("job.finished", outcome="cancelled", duration_ms=0.0, skipped=context is not None)

    def after_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Start this process's flusher, which also beats the worker's heartbeat."""
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="pfd-job-flusher", daemon=True)
        self._flusher.start()

    def before_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        """Stop the flusher after a last flush, so no final state is left behind."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)

    def _flush_loop(self) -> None:
        last_beat = 0.0
        while True:
            stopping = self._stop.wait(self.flush_interval_s)
            try:
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    self.store.redis.set(
                        f"{self.store.prefix}:worker:{self.worker_name}", time.time(),
                        ex=max(int(self.heartbeat_s * 3), 1),
                    )
                    last_beat = time.monotonic()
                while self.store.flush(self.flush_batch) >= self.flush_batch:
                    pass
            except Exception as exc:  # top of a background loop: log, then try again next tick
                log.warning("jobs.flush_failed", error=mask_secrets(str(exc)))
            if stopping:
                return
