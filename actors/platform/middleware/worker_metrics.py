"""Dramatiq's Prometheus middleware, recording into the host's metrics directory, serving nothing.

Dramatiq's middleware forks an exposition server per ``dramatiq`` command, so every Procfile
line on a host would need a port of its own. Here each worker process only records into
the multiprocess directory, and ``pfd metrics`` serves the whole host from one port.
Import this module only after ``actors.platform.broker.assembly`` pointed the metrics variables at that
directory (Dramatiq and prometheus_client read them when imported).
"""

from __future__ import annotations

from dramatiq.middleware.prometheus import Prometheus

__all__ = ["WorkerMetrics"]


class WorkerMetrics(Prometheus):
    """Dramatiq's worker metrics, without the exposition server."""

    @property
    def forks(self):  # type: ignore[no-untyped-def]
        """No exposition server per worker command: ``pfd metrics`` serves the host."""
        return []
