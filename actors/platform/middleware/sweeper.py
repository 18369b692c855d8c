"""Every worker process sweeps dead workers once a ``interval_s``, so redelivery does not wait on chance.

A killed worker's messages come back at most ``interval_s`` after its heartbeat goes stale
(the broker's heartbeat timeout), and the consumers waiting on their queue are woken at
once: redelivery within the heartbeat timeout plus about a second, wherever any worker runs
(each one sweeps every queue, and two sweeps never redeliver a message twice: each is one
Lua call).

After an outage every heartbeat in Redis is stale, those of the workers that are alive and
running jobs too: they beat again within a second or two of Redis coming back. So a process
sweeps only once it has reached Redis without a break for a whole heartbeat timeout (its
start counts as a break): a sweep right after an outage would run their jobs twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware

from actors.platform.outages import OutageLog
from actors.platform.redelivery import Redelivery

__all__ = ["Sweeper"]

log = structlog.get_logger("pfd.broker")


class Sweeper(Middleware):
    """Runs ``Redelivery.sweep`` every ``interval_s`` in a worker process's own thread."""

    def __init__(self, *, redelivery: Callable[[], Redelivery], interval_s: float, heartbeat_timeout_s: float) -> None:
        self._redelivery = redelivery
        self.interval_s = interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Start this process's sweeping thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pfd-sweeper", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker, worker):  # type: ignore[no-untyped-def]
        """Stop sweeping: a worker on its way out leaves redelivery to the others."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        redelivery = self._redelivery()
        outage = OutageLog(log, "broker.sweep")
        reached_since = time.monotonic()
        while not self._stop.wait(self.interval_s):
            try:
                if time.monotonic() - reached_since < self.heartbeat_timeout_s:
                    redelivery.broker.client.ping()
                else:
                    swept = redelivery.sweep()
                    if swept.redelivered or swept.expired_dead_letters:
                        log.warning("broker.redelivered", dead_workers=swept.dead_workers,
                                    messages=swept.redelivered, expired_dead_letters=swept.expired_dead_letters)
                outage.succeeded()
            except Exception as exc:  # noqa: BLE001  (top of a background loop: log, then try again next round)
                outage.failed(exc)
                reached_since = math.inf
                continue
            if reached_since == math.inf:
                reached_since = time.monotonic()
