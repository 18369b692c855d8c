"""An MLflow run of one record, kept across redeliveries, fed through the background writer.

``TrackedRun`` finds the record's run (the id kept in ``mlflow_runs``, else a run tagged
``pfd.record = <kind>:<id>``, left by a worker that died before keeping it) or creates one,
on the writer's thread; every later call is queued behind that and uses its id. Epoch
metrics are logged once per step (a resumed run first reads which steps the server holds),
several epochs to a request when they come quickly.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actors.platform.mlflow_writer import MlflowWriter
from actors.store.db import Database
from actors.store.mlflow_runs import find_mlflow_run, keep_mlflow_run

__all__ = ["EPOCH_BATCH_S", "RECORD_TAG", "TrackedRun", "flat_params", "run_link"]

RECORD_TAG = "pfd.record"
STEP_KEY = "val_acc"  # every epoch logs it: its history says which steps the server holds
_BATCH = 100  # MLflow takes at most 100 params / 1000 metrics per log_batch
_METRICS_BATCH = 1000
EPOCH_BATCH_S = 2.0
_PARAM_CHARS = 6000


def flat_params(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    """``{"prefix.key": "value"}`` for a nested mapping, as MLflow's string params."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flat_params(name, value))
        else:
            flat[name] = str(value)[:_PARAM_CHARS]
    return flat


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI address of a run (an http(s) tracking URI serves the UI)."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _log_batch(client: Any, run_id: str, *, params: list[tuple[str, str]] = (),  # type: ignore[assignment]
               tags: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
    # mlflow is imported on the writer's thread only: a job thread importing it at the same
    # time would see a half-initialised module (and would wait for a slow import).
    from mlflow.entities import Param, RunTag

    client.log_batch(run_id, params=[Param(k, v) for k, v in params], tags=[RunTag(k, v) for k, v in tags])


class TrackedRun:
    """One record's MLflow run; every method queues its work and returns at once.

    ``reopen=False`` refers to a run without marking it running again or re-tagging it (it
    is still created when missing): a trial's view of its campaign's parent run.
    """

    def __init__(self, writer: MlflowWriter, database: Database, *, experiment: str, kind: str, record_id: str,
                 name: str, tags: Mapping[str, Any], parent: TrackedRun | None = None, reopen: bool = True) -> None:
        self.writer, self.kind, self.record_id, self._reopen = writer, kind, record_id, reopen
        self.run_id = find_mlflow_run(database, kind, record_id)
        self._logged_steps: set[int] | None = None
        self._epochs: list[tuple[int, int, dict[str, float | None]]] = []  # (step, ms timestamp, metrics)
        self._epochs_sent = -math.inf
        self._lock = threading.Lock()
        self._database, self._experiment, self._name = database, experiment, name
        self._tags = {RECORD_TAG: f"{kind}:{record_id}", **tags}
        self._parent = parent
        writer.submit(f"start {kind} run {record_id}", self._start)

    def _start(self, client: Any) -> None:
        tags = {k: str(v) for k, v in self._tags.items()}
        if self._parent is not None:
            if self._parent.run_id is None:
                raise LookupError(f"the parent run of {self.kind} {self.record_id} was never started")
            tags["mlflow.parentRunId"] = self._parent.run_id
        if self.run_id is None:
            experiment_id = self.writer.experiment_id(client, self._experiment)
            found = client.search_runs([experiment_id], filter_string=f"tags.`{RECORD_TAG}` = '{self._tags[RECORD_TAG]}'",
                                       max_results=1)
            created = found[0].info.run_id if found else client.create_run(
                experiment_id, run_name=self._name, tags=tags).info.run_id
            self.run_id = keep_mlflow_run(self._database, self.kind, self.record_id, created)
            if self.run_id != created and not found:
                client.delete_run(created)  # another job kept its run first
        elif self._reopen:
            client.update_run(self.run_id, status="RUNNING")
        else:
            return  # a reference to a run another job started (a campaign's, from its trials)
        _log_batch(client, self.run_id, tags=list(tags.items()))

    def _submit(self, what: str, call: Callable[[Any], None]) -> None:
        """Queue ``call(client)`` for this run, after the epochs still waiting; skipped when the run could not start."""
        def guarded(client: Any) -> None:
            if self.run_id is not None:  # else its start was refused (logged): nothing to log to
                self._log_epochs(client)
                call(client)
        self.writer.submit(f"{what} of {self.kind} {self.record_id}", guarded)

    def params(self, params: Mapping[str, str]) -> None:
        """Log string params (re-logging the same value is allowed)."""
        items = list(params.items())
        for start in range(0, len(items), _BATCH):
            self._submit("params", lambda c, chunk=items[start:start + _BATCH]: _log_batch(c, self.run_id, params=chunk))

    def tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the run."""
        items = [(k, str(v)) for k, v in tags.items()]
        self._submit("tags", lambda c: _log_batch(c, self.run_id, tags=items))

    def metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        """Log metrics at ``step`` (``None`` values are left out)."""
        self._submit("metrics", lambda c: self._log(c, metrics, step))

    def epoch(self, step: int, metrics: Mapping[str, float | None]) -> None:
        """Log one epoch's metrics at ``step`` unless the server already holds that step.

        Epochs are sent together, at most one request per ``EPOCH_BATCH_S`` (and before any
        other call of this run): short epochs do not each pay a request, on either side.
        """
        with self._lock:
            self._epochs.append((step, int(time.time() * 1000), dict(metrics)))
            due = time.monotonic() - self._epochs_sent >= EPOCH_BATCH_S
            if due:
                self._epochs_sent = time.monotonic()
        if due:
            self._submit(f"epoch {step}", lambda client: None)  # _submit sends what waits

    def _log_epochs(self, client: Any) -> None:
        """Send the waiting epochs the server lacks; they leave the list only once written (a retry resends)."""
        from mlflow.entities import Metric

        with self._lock:
            waiting = list(self._epochs)
        if not waiting:
            return
        if self._logged_steps is None:
            self._logged_steps = {m.step for m in client.get_metric_history(self.run_id, STEP_KEY)}
        metrics = [Metric(key, float(value), stamp, step) for step, stamp, values in waiting
                   if step not in self._logged_steps for key, value in values.items() if value is not None]
        for start in range(0, len(metrics), _METRICS_BATCH):
            client.log_batch(self.run_id, metrics=metrics[start:start + _METRICS_BATCH])
        self._logged_steps.update(step for step, _, _ in waiting)
        with self._lock:
            del self._epochs[:len(waiting)]

    def _log(self, client: Any, values: Mapping[str, float | None], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items() if v is not None])

    def artifact(self, path: str | Path, folder: str | None = None) -> None:
        """Upload a file (or a folder's files) under ``folder`` of the run's artifacts."""
        self._submit(f"artifact {Path(path).name}",
                     lambda c: (c.log_artifacts if Path(path).is_dir() else c.log_artifact)(
                         self.run_id, str(path), folder))

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self._submit("end", lambda c: c.set_terminated(self.run_id, status))
