"""The crash guard: a message that keeps killing its worker process is dead-lettered, not run again.

When a job takes its worker process down (killed for memory, a crash in native code), the
broker redelivers the message after the heartbeat timeout, and it would take down every
worker that starts it, forever. On the queues of heavy work (``CRASH_GUARDED_QUEUES``),
each start of a delivery is counted in Redis before the job runs; a delivery that has
already been started ``max_starts`` times without finishing is failed with the reason and
dead-lettered. Retries are new deliveries with their own count, so only deaths count.

A start counts as a crash only when the process died while running it: a worker asked to
stop (SIGTERM, a graceful stop) takes back the starts it is running as its stop begins, so
a job that outlasts the stop and is killed by the supervisor after its grace, as a
redeploy does, comes back without moving toward the limit.

The count is made before the job runs, so while Redis is unreachable the job waits for it,
as the consumer does: a start that was not counted would be a crash the guard cannot see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware, SkipMessage

from actors.platform.broker.consumer import REDIS_DOWN
from actors.platform.errors import WorkerCrashLoop
from actors.platform.outages import OutageLog, call_until_back
from actors.store.jobs import JobStore
from config.settings import mask_secrets

__all__ = ["REFUSED_OPTION", "CrashGuard"]

log = structlog.get_logger("pfd.crash_guard")

# Set on a refused message in this process, for JobTracking to record why it was skipped.
REFUSED_OPTION = "pfd_refused"


class CrashGuard(Middleware):
    """Count starts per delivery on guarded queues; refuse one started ``max_starts`` times already."""

    def __init__(self, *, store: Callable[[], JobStore], queues: tuple[str, ...], max_starts: int, ttl_s: int) -> None:
        self._store = store
        self.queues = frozenset(queues)
        self.max_starts = max_starts
        self.ttl_s = ttl_s
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._outage = OutageLog(log, "crash_guard.count_start")

    def before_process_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Count this start (waiting for Redis if need be); fail and dead-letter a delivery
        that killed its worker too often."""
        delivery = message.options.get("redis_message_id")
        if delivery is None or message.queue_name.removesuffix(".DQ") not in self.queues:
            return
        store = self._store()
        starts = call_until_back(lambda: store.count_start(delivery, ttl_s=self.ttl_s), errors=REDIS_DOWN,
                                 outage=self._outage)
        if starts <= self.max_starts:
            with self._lock:
                self._running.add(delivery)
            return
        reason = (f"started {starts - 1} times and its worker process died each time; "
                  f"dead-lettered instead of being run again")
        log.error("message.crash_loop", message_id=message.message_id, actor=message.actor_name, starts=starts - 1)
        message.options[REFUSED_OPTION] = WorkerCrashLoop(reason)
        message.fail()
        raise SkipMessage(reason)

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Forget a start that ended."""
        with self._lock:
            self._running.discard(message.options.get("redis_message_id"))

    after_skip_message = after_process_message  # a later middleware may skip what was counted

    def before_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        """Take back the starts of the jobs still running: a stop was asked for, so a death
        from here on is the supervisor's kill, not the job's crash."""
        with self._lock:
            running = sorted(self._running)
        if not running:
            return
        try:
            self._store().uncount_starts(running)
        except Exception as exc:  # noqa: BLE001  (a shutdown must go on; the starts then count, as a crash's would)
            log.warning("crash_guard.uncount_failed", deliveries=len(running), error=mask_secrets(str(exc)))
            return
        log.info("crash_guard.starts_taken_back", deliveries=len(running))
