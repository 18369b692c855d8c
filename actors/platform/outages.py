"""Logging a background loop's outage: once when it starts, every so often while it lasts, once when it ends.

Background loops (the tracking tick, the job recorder) retry every few hundred ms; a line
per failed try would bury everything else in the log for the length of an outage.
``call_until_back`` waits out an outage in place, logged the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from config.settings import mask_secrets

__all__ = ["OutageLog", "call_until_back"]

T = TypeVar("T")


class OutageLog:
    """Log ``<name>_failed`` at the start of an outage and every ``every_s``; ``<name>_recovered`` at its end."""

    def __init__(self, logger: structlog.typing.FilteringBoundLogger, name: str, *, every_s: float = 30.0) -> None:
        self.logger = logger
        self.name = name
        self.every_s = every_s
        self.failing_since: float | None = None
        self._last_warned = 0.0

    def failed(self, exc: BaseException) -> None:
        """Note one failed try; log it if it starts an outage or ``every_s`` has passed."""
        now = time.monotonic()
        if self.failing_since is None or now - self._last_warned >= self.every_s:
            failing_s = 0.0 if self.failing_since is None else round(now - self.failing_since, 1)
            self.logger.warning(f"{self.name}_failed", error=mask_secrets(str(exc)), failing_s=failing_s)
            self._last_warned = now
        if self.failing_since is None:
            self.failing_since = now

    def succeeded(self) -> None:
        """Note a try that worked; log the end of an outage if one was under way."""
        if self.failing_since is not None:
            self.logger.info(f"{self.name}_recovered", down_s=round(time.monotonic() - self.failing_since, 2))
            self.failing_since = None


def call_until_back(call: Callable[[], T], *, errors: tuple[type[BaseException], ...], outage: OutageLog,
                    max_pause_s: float = 2.0) -> T:
    """Return ``call()``, calling it again while it raises one of ``errors`` (the service is
    down), with pauses growing from 0.1 s to ``max_pause_s``; the outage goes to ``outage``."""
    pause = 0.1
    while True:
        try:
            value = call()
        except errors as exc:
            outage.failed(exc)
            time.sleep(pause)
            pause = min(pause * 2, max_pause_s)
            continue
        outage.succeeded()
        return value
