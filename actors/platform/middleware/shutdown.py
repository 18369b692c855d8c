"""Graceful shutdown that a signal can never deadlock, under runners that signal a whole group.

honcho (and others) send SIGTERM to the process group: each Dramatiq worker child gets it
once from the runner and once more from Dramatiq's main process, and Dramatiq reads a
second SIGTERM as "kill now", dropping the running job. The child therefore reacts to the
first SIGTERM (or SIGHUP, which Dramatiq treats alike) and ignores repeats for ``grace_s``:
running jobs finish and prefetched messages go back to the queue; SIGKILL still ends it at
once.

The reaction never runs inside the signal handler (``actors.platform.signals``): Dramatiq's
own handler logs, and a signal that lands while the main thread holds a log lock would wait
on that lock forever, the worker still taking jobs. On the first signal the worker threads
are told to stop at once, so no job starts after it; Dramatiq's main loop, which notices the
stop within a second, then waits for the running jobs and requeues the rest.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
from dramatiq.middleware import Middleware

from actors.platform.signals import defer_signals

__all__ = ["GracefulShutdown"]

# Dramatiq's worker exit code for "killed" (dramatiq.cli.RET_KILLED).
_EXIT_KILLED = 1


class GracefulShutdown(Middleware):
    """Stops the worker on the first SIGTERM or SIGHUP, ignores repeats for ``grace_s`` seconds."""

    def __init__(self, *, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self._stop_handlers: dict[int, Callable[[int, Any], Any]] = {}
        self._first_at: float | None = None
        self._worker: Any = None

    def after_process_boot(self, broker):  # type: ignore[no-untyped-def]
        """Take over the worker process's stop handlers (only the dramatiq CLI emits this hook)."""
        for signum in (signal.SIGTERM, signal.SIGHUP):
            handler = signal.getsignal(signum)
            if callable(handler):
                self._stop_handlers[signum] = handler
        if self._stop_handlers:
            defer_signals(self._stop_handlers, self._on_stop_signal, name="pfd-shutdown")

    def after_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Keep the worker, so its threads can be told to stop as soon as a signal comes."""
        self._worker = worker

    def _on_stop_signal(self, signum: int) -> None:
        """React to a stop signal, on the shutdown thread (never inside the handler)."""
        log = structlog.get_logger("pfd.worker")
        now = time.monotonic()
        name = signal.Signals(signum).name
        if self._first_at is not None:
            since = now - self._first_at
            if since < self.grace_s:
                log.info("worker.repeated_stop_signal_ignored", signal=name, seconds_since_first=round(since, 3))
                return
            # Past the grace period a repeat means "stop now", as Dramatiq reads it.
            log.warning("worker.killed", signal=name, seconds_since_first=round(since, 3))
            os._exit(_EXIT_KILLED)
        self._first_at = now
        log.info("worker.stopping", signal=name)
        if self._worker is not None:
            # Each worker thread finishes the job it runs and takes no other.
            for thread in self._worker.workers:
                thread.stop()
        # Dramatiq's handler ends its main loop, which stops the consumers and requeues.
        self._stop_handlers[signum](signum, None)
