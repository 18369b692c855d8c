"""The job recorder: drains job states from Redis into the database, in batches.

One small process (the Procfile's ``recorder`` line; several are safe) keeps database
writes off the workers, so a burst of short jobs is never slowed by the database, and a
database outage only delays rows: states wait in Redis and are written when it is back.
"""

from __future__ import annotations

import threading

import structlog

from actors.platform.outages import OutageLog
from actors.store.jobs import JobStore

__all__ = ["run_recorder"]

log = structlog.get_logger("pfd.recorder")


def run_recorder(store: JobStore, *, interval_s: float, batch: int, settle_s: float, stop: threading.Event) -> None:
    """Write dirty jobs to the database until ``stop`` is set; then write what is left.

    Final jobs are written at once, the others once they have been dirty ``settle_s``.
    """
    log.info("recorder.started", interval_s=interval_s, batch=batch, settle_s=settle_s)
    outage = OutageLog(log, "recorder.flush")
    while True:
        stopping = stop.is_set()
        try:
            # What is left at the stop is written whatever its age.
            settle = 0.0 if stopping else settle_s
            written = store.flush(batch, settle_s=settle)
            while written >= batch:
                written = store.flush(batch, settle_s=settle)
            outage.succeeded()
        except Exception as exc:  # top of a background loop: log, wait, try again
            outage.failed(exc)
        if stopping:
            log.info("recorder.stopped")
            return
        stop.wait(interval_s)
