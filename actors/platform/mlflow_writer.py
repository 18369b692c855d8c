"""One background thread per process that writes to MLflow, in order, retrying while it is down.

Jobs hand it calls (``submit``) and go on at once: no training loop ever waits on the
network. A call that fails because the server is unreachable or answers 5xx stays at the head
of the queue and is tried again with exponential backoff (capped at ``retry_max_s``), so what
was logged while MLflow was down reaches it, in order, once it is back; a call the server
refuses as bad (a 4xx code) is dropped with a WARNING, never retried. ``gap()`` says how long
the server has been unreachable and how much waits, for a job's status text. The thread
outlives the jobs that fed it, so a run still completes after its job has returned.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from actors.platform.errors import StoreError
from config.settings import Settings, mask_secrets

__all__ = ["Gap", "MlflowWriter", "mlflow_writer"]

log = structlog.get_logger("pfd.mlflow")

# Error codes of requests the server refuses as malformed: retrying cannot help.
_REFUSED = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                      "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED"})


@dataclass(frozen=True)
class Gap:
    """MLflow unreachable since ``seconds`` ago, with ``waiting`` calls queued behind ``error``."""

    seconds: float
    waiting: int
    error: str

    def text(self) -> str:
        """A short phrase for a job's status text."""
        return f"MLflow unreachable for {self.seconds:.0f} s, {self.waiting} entries waiting"


def _retryable(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, FileNotFoundError):
        return False  # an artifact that is gone will not come back
    if isinstance(exc, MlflowException):
        return exc.error_code not in _REFUSED
    # Unreachable (requests' errors are OSErrors), or our database, which keeps run ids.
    return isinstance(exc, (OSError, StoreError))


class MlflowWriter:
    """A FIFO of MLflow calls run by one daemon thread; see the module docstring."""

    def __init__(self, *, tracking_uri: str, retry_max_s: float, http_timeout_s: float) -> None:
        self.tracking_uri = tracking_uri
        self._retry_max_s = retry_max_s
        self._http_timeout_s = http_timeout_s
        self._queue: deque[tuple[str, Callable[[Any], None]]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._gap_since: float | None = None
        self._gap_error = ""
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="mlflow-writer", daemon=True)
        self._thread.start()

    def submit(self, what: str, call: Callable[[Any], None]) -> None:
        """Queue ``call(client)``; ``what`` names it in logs. Returns at once."""
        with self._cond:
            self._queue.append((what, call))
            self._cond.notify_all()

    def gap(self) -> Gap | None:
        """How long MLflow has been unreachable and what waits, or ``None`` while it answers."""
        with self._cond:
            if self._gap_since is None:
                return None
            return Gap(time.monotonic() - self._gap_since, len(self._queue), self._gap_error)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every queued call to be written; True when all were."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def experiment_id(self, client: Any, name: str) -> str:
        """The id of MLflow experiment ``name``, created on first use (called on the thread)."""
        if name not in self._experiments:
            found = client.get_experiment_by_name(name)
            self._experiments[name] = found.experiment_id if found else client.create_experiment(name)
        return self._experiments[name]

    def _connect(self) -> Any:
        if self._client is None:
            # MLflow's own HTTP retries would hold the queue for minutes per call; this thread
            # retries instead, and a short timeout keeps a gap's report current.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", f"{self._http_timeout_s:g}")
            # A worker's stdout carries its JSON log lines: no "View run" banners in between.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _next(self) -> tuple[str, Callable[[Any], None]]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            self._busy = True
            return self._queue[0]

    def _done(self) -> None:
        with self._cond:
            self._queue.popleft()
            self._busy = False
            self._cond.notify_all()

    def _run(self) -> None:
        # mlflow's import (seconds of CPU) starts at once, while the job that made this writer
        # still loads its data, rather than with the first call, among its first epochs.
        try:
            self._connect()
        except Exception as exc:  # the first call will try again, and log what it meets
            log.error("mlflow.client_failed", error=mask_secrets(f"{type(exc).__name__}: {exc}")[:500])
        delay = 0.5
        while True:
            what, call = self._next()
            try:
                call(self._connect())
            except Exception as exc:  # the top of a background loop: log, then retry or drop
                if _retryable(exc):
                    self._note_gap(what, exc)
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                    time.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                log.warning("mlflow.dropped", call=what, error=mask_secrets(f"{type(exc).__name__}: {exc}")[:500])
            else:
                self._note_back()
            delay = 0.5
            self._done()

    def _note_gap(self, what: str, exc: BaseException) -> None:
        error = mask_secrets(f"{type(exc).__name__}: {exc}")[:500]
        with self._cond:
            first = self._gap_since is None
            if first:
                self._gap_since = time.monotonic()
            self._gap_error, waiting = error, len(self._queue)
        if first:
            log.warning("mlflow.unreachable", call=what, waiting=waiting, error=error)

    def _note_back(self) -> None:
        with self._cond:
            since, self._gap_since = self._gap_since, None
            waiting = len(self._queue) - 1
        if since is not None:
            log.info("mlflow.reachable", gap_s=round(time.monotonic() - since, 1), waiting=waiting)


_writers: dict[str, MlflowWriter] = {}
_writers_lock = threading.Lock()


def mlflow_writer(settings: Settings) -> MlflowWriter | None:
    """This process's writer for ``settings.mlflow_tracking_uri``; ``None`` when it is unset (or mlflow is not installed)."""
    uri = settings.mlflow_tracking_uri
    if not uri:
        return None
    with _writers_lock:
        if uri not in _writers and importlib.util.find_spec("mlflow") is None:
            # Tracking is a side channel: a worker without the extra still trains, and says why it does not log.
            log.error("mlflow.not_installed", hint='PFD_MLFLOW_TRACKING_URI is set: pip install -e ".[mlflow]"')
            return None
        if uri not in _writers:
            writer = MlflowWriter(tracking_uri=uri, retry_max_s=settings.mlflow_retry_max_s,
                                  http_timeout_s=settings.mlflow_http_timeout_s)
            # A worker that stops gives what it still holds a last chance to reach the server.
            atexit.register(writer.drain, settings.mlflow_flush_wait_s)
            _writers[uri] = writer
        return _writers[uri]
