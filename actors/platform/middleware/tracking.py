"""Records every message's state transitions, attempts, timings and errors.

Hooks run in the order Dramatiq gives them: this middleware sits before ``Retries`` in the
broker's list, so its ``after_process_message`` runs after Retries has decided; a job is
marked ``failed`` only when ``message.failed`` says no retry follows.

One round trip per message: a job's start is held in memory and recorded with its first
progress report, by a background tick once it has run ``announce_after_s``, or with its
outcome (short jobs); cancel requests are read from a set that the tick refreshes.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware, SkipMessage, TimeLimitExceeded

from actors.platform.broker.command_batch import Batch
from actors.platform.context import (
    PARENT_OPTION,
    ROOT_OPTION,
    JobContext,
    bind_job,
    lineage_options,
    unbind_job,
)
from actors.platform.errors import JobTimedOut
from actors.platform.metrics import JobMetrics
from actors.platform.middleware.crash_guard import REFUSED_OPTION
from actors.platform.middleware.fanout_members import count_member
from actors.platform.outages import OutageLog
from actors.store.fanouts import FANOUT_OPTION
from actors.store.jobs import LIVE_TTL_S, JobStore
from actors.store.models import FINAL_JOB_STATES
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
        settle_s: float = 0.0,
        heartbeat_s: float = 2.0,
        announce_after_s: float = 0.05,
        record: bool = False,
    ) -> None:
        self._store = store
        self.flush_interval_s = flush_interval_s
        self.flush_batch = flush_batch
        self.settle_s = settle_s
        self.heartbeat_s = heartbeat_s
        self.announce_after_s = announce_after_s
        self.record = record
        self.worker_name = ""
        self.worker_queues: list[str] = []
        self._running: dict[str, JobContext] = {}
        self._running_lock = threading.Lock()
        self._cancelled: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def actor_options(self) -> set[str]:
        """Options this middleware reads from actors."""
        return {"reports_own_failures"}

    @property
    def store(self) -> JobStore:
        """The job store of this process."""
        return self._store()

    @functools.cached_property
    def metrics(self) -> JobMetrics:
        """The cluster-wide job outcome counters, next to the job store."""
        return JobMetrics(self.store.redis, prefix=self.store.prefix)

    def before_enqueue(self, broker, message, delay):  # type: ignore[no-untyped-def]
        """Record a new message as queued (a retry was already recorded as retrying)."""
        if message.options.get("retries"):
            return
        # A message sent from inside a job is a child of that job, in that job's tree.
        message.options.update(lineage_options(message.options))
        write = functools.partial(
            self.store.enqueued_into, message_id=message.message_id, actor=message.actor_name,
            queue=message.queue_name.removesuffix(".DQ"), fanout_id=message.options.get(FANOUT_OPTION),
            parent_id=message.options.get(PARENT_OPTION), root_id=message.options.get(ROOT_OPTION),
        )
        ride_along = getattr(broker, "ride_along_enqueue", None)
        if ride_along is None or not ride_along(write):
            self._write_now(write)

    def before_process_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Hold the attempt's start; skip a message whose job was cancelled while it waited."""
        message_id = message.message_id
        queue = message.queue_name.removesuffix(".DQ")
        attempt = 1 + message.options.get("retries", 0)
        limit_ms = message.options.get("time_limit") or broker.get_actor(message.actor_name).options.get("time_limit")
        context = JobContext(
            message_id=message_id,
            actor=message.actor_name,
            queue=queue,
            attempt=attempt,
            store=self.store,
            deadline=time.monotonic() + limit_ms / 1000 - _DEADLINE_MARGIN_S if limit_ms else None,
            fanout_id=message.options.get(FANOUT_OPTION),
            parent_id=message.options.get(PARENT_OPTION),
            root_id=message.options.get(ROOT_OPTION) or message_id,
            start_fields=JobStore.start_fields(
                message_id, message.actor_name, queue, attempt=attempt, worker=self.worker_name, started_at=time.time()
            ),
            cancel_check=lambda: message_id in self._cancelled,
            on_member_progress=self._member_progress(message),
        )
        bind_job(context)
        if message_id in self._cancelled:
            raise SkipMessage("cancelled before it started")
        log.info("job.started", attempt=attempt, worker=self.worker_name)
        with self._running_lock:
            self._running[message_id] = context

    @staticmethod
    def _member_progress(message):  # type: ignore[no-untyped-def]
        fanout_id = message.options.get(FANOUT_OPTION)
        if not fanout_id:
            return None
        from actors.platform.fanout import fanout_store

        return lambda fraction: fanout_store().member_progress(fanout_id, message.message_id, fraction)

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Record the attempt's outcome and write the job's one log line."""
        context = unbind_job()
        with self._running_lock:
            self._running.pop(message.message_id, None)
        duration_ms = (time.monotonic() - context.started) * 1000 if context else 0.0
        raised = exception is not None
        if exception is None:
            state = (context.outcome if context else None) or "succeeded"
            exception = context.error if context and state == "failed" else None
        elif isinstance(exception, (TimeLimitExceeded, JobTimedOut)):
            state = "timed_out"
        elif message.failed:
            state = "failed"
        else:
            state = "retrying"
        error_message = mask_secrets(str(exception) or type(exception).__name__) if exception else None
        if isinstance(exception, TimeLimitExceeded):
            error_message = "the job passed its time limit"
        start = context.start_fields if context is not None and not context.announced else None
        # A member that returned was counted by FanoutMembers, before its group's callback.
        if raised and state in FINAL_JOB_STATES and message.options.get(FANOUT_OPTION):
            count_member(broker, message, failed=True, dead=bool(message.failed))
        if state in ("failed", "timed_out"):
            self._announce_failure(broker, message, context, exception, error_message)
        outcome = JobStore.outcome_fields(
            state, duration_ms=duration_ms, error=exception, error_message=error_message, result=result, start=start,
        )
        self._record(message, outcome)
        fields = {"outcome": state, "duration_ms": round(duration_ms, 3)}
        if exception is not None:
            fields.update(error_type=type(exception).__name__, error=error_message)
        (log.info if state in ("succeeded", "cancelled") else log.warning)("job.finished", **fields)

    def _record(self, message, outcome: dict) -> None:  # type: ignore[no-untyped-def]
        """Record an attempt's outcome (and count it) with the message's ack, or at once if the
        broker cannot carry it."""
        queue = message.queue_name.removesuffix(".DQ")

        def write(batch: Batch) -> None:
            self.store.record_into(batch, message.message_id, outcome, ttl_s=LIVE_TTL_S)
            self.metrics.count_into(batch, actor=message.actor_name, queue=queue, outcome=outcome["state"],
                                    duration_s=outcome["duration_ms"] / 1000)

        ride_along = getattr(message, "ride_along", None)
        if ride_along is not None:
            # Written in the ack's transaction: final in Redis exactly when the message is acked.
            ride_along.append(write)
            return
        try:
            self._write_now(write)
        except Exception as exc:  # an after-hook must never raise; the broker would only log it
            log.error("job.record_failed", outcome=outcome.get("state"), error=mask_secrets(str(exc)))

    def _write_now(self, write: Callable[[Batch], None]) -> None:
        batch = Batch(self.store.redis)
        write(batch)
        batch.execute()

    @staticmethod
    def _announce_failure(broker, message, context, exception, error_message):  # type: ignore[no-untyped-def]
        """Send ``job.failed`` for a final failure, unless the actor reports its own; return
        the event's message (None when there is none).

        With a broker that acks in transactions, the event's message rides in the ack that
        records the failure: the job is failed in Redis exactly when its announcement is
        queued, and a crash before the ack redelivers the job, never a told-but-unrecorded
        or recorded-but-untold failure.
        """
        actor = broker.actors.get(message.actor_name)
        if actor is None or actor.options.get("reports_own_failures") or "notify" not in broker.actors:
            return None
        notify = broker.get_actor("notify")
        try:
            event = notify.message_with_options(
                kwargs={
                    "event": "job.failed",
                    # One event per job: a redelivered message cannot announce it twice.
                    "event_id": f"job.failed:{message.message_id}",
                    "payload": {
                        "message_id": message.message_id, "actor": message.actor_name,
                        "queue": message.queue_name.removesuffix(".DQ"),
                        "error_type": type(exception).__name__ if exception else "",
                        "error_message": error_message or "", "attempts": context.attempt if context else 1,
                    },
                },
            )
            ride_along = getattr(message, "ride_along", None)
            prepare = getattr(broker, "prepare_enqueue", None)
            if ride_along is not None and prepare is not None:
                event, write = prepare(event)
                ride_along.append(write)
            else:
                event = broker.enqueue(event)
        except Exception as exc:  # an after-hook must never raise: the failure is still recorded
            log.error("job.failure_event_failed", error=mask_secrets(str(exc)))
            return None
        return event

    def after_skip_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Record a skipped message: cancelled before it ran, or refused by the crash guard (failed)."""
        refused = message.options.pop(REFUSED_OPTION, None)
        state = "failed" if refused else "cancelled"
        with self._running_lock:
            self._running.pop(message.message_id, None)
        if message.options.get(FANOUT_OPTION):
            count_member(broker, message, failed=True, dead=bool(refused))
        context = unbind_job()
        if refused:
            self._announce_failure(broker, message, context, refused, str(refused))
        self._record(message, JobStore.outcome_fields(
            state, duration_ms=0.0, error=refused, start=context.start_fields if context else None,
        ))
        if refused:
            log.warning("job.finished", outcome=state, duration_ms=0.0, skipped=True,
                        error_type=type(refused).__name__, error=str(refused))
        else:
            log.info("job.finished", outcome=state, duration_ms=0.0, skipped=True)

    def after_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Start this process's ticker: announces starts, reads cancels, beats (and records)."""
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.worker_queues = sorted({name.removesuffix(".DQ") for name in worker.consumers})
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="pfd-job-ticker", daemon=True)
        self._ticker.start()

    def before_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        """Stop the ticker (after a last flush when this process records jobs)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)

    def _announce_long_runners(self) -> None:
        now = time.monotonic()
        with self._running_lock:
            due = [c for c in self._running.values() if not c.announced and now - c.started >= self.announce_after_s]
        if due:
            self.store.announce_started([c.start_fields for c in due if c.start_fields])
        # Only once written: a start that met an outage is announced by a later tick, or
        # recorded with the outcome.
        for context in due:
            context.announced = True

    def _tick_loop(self) -> None:
        tick = min(self.announce_after_s, self.flush_interval_s)
        last_flush = last_beat = 0.0
        outage = OutageLog(log, "jobs.tick")
        while True:
            stopping = self._stop.wait(tick)
            try:
                self._announce_long_runners()
                self._cancelled = frozenset(self.store.cancel_requests())
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    self.store.beat(self.worker_name, self.worker_queues, ttl_s=max(int(self.heartbeat_s * 3), 1))
                    last_beat = now
                if self.record and (stopping or now - last_flush >= self.flush_interval_s):
                    settle_s = 0.0 if stopping else self.settle_s
                    while self.store.flush(self.flush_batch, settle_s=settle_s) >= self.flush_batch:
                        pass
                    last_flush = now
                outage.succeeded()
            except Exception as exc:  # top of a background loop: log, then try again next tick
                outage.failed(exc)
            if stopping:
                return
