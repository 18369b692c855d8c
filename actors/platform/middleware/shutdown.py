"""Graceful shutdown under Procfile runners that signal a whole process group.

honcho (and others) send SIGTERM to the process group: each Dramatiq worker child gets
it once from the runner and once more from Dramatiq's main process, and Dramatiq reads a
second SIGTERM as "kill now", dropping the running job. The child keeps Dramatiq's
handler for the first SIGTERM and ignores repeats for ``grace_s``, so running jobs finish
and prefetched messages go back to the queue; SIGKILL still ends it at once.
"""

from __future__ import annotations

import signal
import time

import structlog
from dramatiq.middleware import Middleware

__all__ = ["GracefulShutdown"]


class GracefulShutdown(Middleware):
    """Ignores repeated SIGTERMs for ``grace_s`` seconds after the first."""

    def __init__(self, *, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s

    def after_process_boot(self, broker):  # type: ignore[no-untyped-def]
        """Wrap the worker process's SIGTERM handler (only the dramatiq CLI emits this hook)."""
        original = signal.getsignal(signal.SIGTERM)
        if not callable(original):
            return
        first_at: list[float] = []
        log = structlog.get_logger("pfd.worker")

        def handler(signum, frame):  # type: ignore[no-untyped-def]
            now = time.monotonic()
            if first_at and now - first_at[0] < self.grace_s:
                log.info("worker.repeated_sigterm_ignored", seconds_since_first=round(now - first_at[0], 3))
                return None
            first_at[:] = [now]
            return original(signum, frame)

        signal.signal(signal.SIGTERM, handler)
