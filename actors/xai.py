"""Explanation actors: one signal on ``cpu_processing``, a batch as a fan-out of them.

``explain_signal`` explains one window of a dataset record with a completed experiment's model
and keeps the attributions (``.npz``) and a plot (``.png``) in ``artifact_root/explanations/<id>``;
the id is a digest of the request, so asking again returns the stored explanation.
``explain_batch`` checks the request, records the batch and fans its signals out; the group's
callback ``finalize_explain_batch`` writes counts, per-signal links and the per-class aggregate
plot, and sends ``xai.completed``. A member refused on its own input fails alone (``job.fail``).
Only compact summaries go through the results backend.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import structlog
from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from actors.notifications import outbox_event, relay_now
from actors.platform.artifact_files import local_file, publish
from actors.platform.base import Payload, job_actor
from actors.platform.catalog import option_row
from actors.platform.context import JobContext
from actors.platform.errors import JobNotFound, RecordConflict, RecordNotFound
from actors.platform.fanout import fan_out, fanout_store, get_fanout
from actors.platform.jobs import get_job
from actors.platform.references import DatasetId, ExperimentId
from actors.record_files import dataset_file, experiment_file
from actors.store import explanations as store
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from actors.store.experiments import get_experiment
from config.settings import Settings, get_settings, mask_secrets
from pipeline.errors import InvalidInput
from pipeline.xai.registry import METHODS, validate_method_params

__all__ = ["ExplainBatch", "ExplainSignal", "FinalizeExplainBatch", "SignalRef", "SignalSelection", "explain_batch",
           "explain_signal", "explanation_batch", "finalize_explain_batch"]

log = structlog.get_logger("pfd.xai")

# Short enough that "xai-" + the id fits a fan-out id and a notification event id.
BatchId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$")]
Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]
MAX_BATCH = 10_000
# Bad input: the job fails at once, never retried; a fan-out member fails alone.
REFUSED = (InvalidInput, RecordNotFound, RecordConflict)


class SignalRef(Payload):
    """A signal: one window of one record of a dataset split (no signal table needed; the
    generator's records have five 1 s windows), or ``window="all"``: the whole record, its
    windows' attributions stitched on one axis."""

    dataset_id: DatasetId
    split: Literal["train", "val", "test"]
    record: int = Field(ge=0)
    window: Annotated[int, Field(ge=0)] | Literal["all"] = 0


def _one_window_for_activations(method: str, signals: list[SignalRef]) -> None:
    """Activation maps are of one window: refuse a whole record (``window="all"``) at once."""
    if method == "activations" and any(s.window == "all" for s in signals):
        raise ValueError("activation maps are drawn for one window: give a window index, not 'all'")


class MethodRequest(Payload):
    """An experiment to explain, a method and its parameters (checked on send against the method's)."""

    experiment_id: ExperimentId = Field(description="a completed experiment: its model is explained")
    method: Method
    params: dict[str, Any] = Field(default_factory=dict, description="the method's parameters, listed by method below")

    @field_validator("params")
    @classmethod
    def _method_accepts(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "method" in info.data:
            validate_method_params(info.data["method"], params)
        return params

    @classmethod
    def documented_options(cls) -> dict[str, list[dict[str, Any]]]:
        """Every method's parameters (``<method>.<parameter>``), their defaults and ranges."""
        return {"params": [
            option_row(f"{method}.{name}", p.kind.__name__, p.default, allowed=p.choices, description=p.help,
                       bounds=[f"{sign} {int(v) if float(v).is_integer() else v}" for sign, v in (("≥", p.low), ("≤", p.high))
                                   if v is not None])
            for method, spec in METHODS.items() for name, p in spec.params.items()]}


class ExplainSignal(MethodRequest):
    """Payload of ``explain_signal``: a completed experiment, a signal, a method and its parameters."""

    signal: SignalRef

    @model_validator(mode="after")
    def _activations_of_a_window(self) -> ExplainSignal:
        _one_window_for_activations(self.method, [self.signal])
        return self


class SignalSelection(Payload):
    """Signals picked by class from a split: ``per_class`` records of each class (1: one per
    class), spread over each class's records, one window of each."""

    dataset_id: DatasetId
    split: Literal["train", "val", "test"] = "test"
    per_class: int = Field(1, ge=1, le=MAX_BATCH)
    window: int = Field(0, ge=0)


class ExplainBatch(MethodRequest):
    """Payload of ``explain_batch``: one experiment and method, and either the ``signals``
    listed or a ``select`` by class (splits are stored ordered by class, so the first
    records of a split are all one class)."""

    signals: list[SignalRef] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    select: SignalSelection | None = None
    batch_id: BatchId | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ExplainBatch:
        if (self.signals is None) == (self.select is None):
            raise ValueError("give either 'signals' or 'select' (records picked by class), not both or neither")
        _one_window_for_activations(self.method, self.signals or [])
        return self


class FinalizeExplainBatch(Payload):
    """Payload of ``finalize_explain_batch`` (the fan-out's completion callback)."""

    batch_id: BatchId
    fanout_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _request(
    database: Database, experiment_id: str, method: str, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the method, its parameters and the experiment; return (experiment, resolved params)."""
    validate_method_params(method, params)  # an unknown method is named before any lookup
    experiment = get_experiment(database, experiment_id)
    if experiment["status"] != "completed" or not experiment["model_path"]:
        raise InvalidInput(
            f"experiment {experiment_id!r} is {experiment['status']}, not completed: it has no model to explain")
    path, _ = _dataset(database, experiment["dataset_id"], "train")
    geometry = _geometry(path)
    resolved = validate_method_params(method, params, model_key=experiment["model_key"],
                                      signal_length=geometry.window_length)
    return experiment, resolved


def _geometry(path: str):  # type: ignore[no-untyped-def]
    from pipeline.datasets.hdf5 import read_geometry

    return read_geometry(path)


def _dataset(database: Database, dataset_id: str, split: str, record: int = 0) -> tuple[str, int]:
    """A completed dataset's path and split size; refuses a record index past the split's end."""
    dataset = get_dataset(database, dataset_id)
    if dataset["status"] != "completed" or not dataset["path"]:
        raise InvalidInput(f"dataset {dataset_id!r} is {dataset['status']}, not completed")
    count = int((dataset["split_counts"] or {}).get(split, 0))
    if record >= count:
        raise InvalidInput(f"record index {record} is out of range: split {split!r} of "
                           f"dataset {dataset_id!r} has {count} records")
    return str(dataset_file(dataset)), count


def _records(path: str, split: str, records: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The windows ``[n, W]`` of some records of a split, read record by record, and each
    window's recorded shaft speed in Hz (NaN where none)."""
    from pipeline.datasets.hdf5 import cut_windows, read_split

    arrays = [read_split(path, split, slice(r, r + 1)) for r in records]
    signals = np.concatenate([a.signals for a in arrays])
    windows, _, record_ids = cut_windows(signals, np.zeros(len(signals), np.int64), _geometry(path))
    return windows, np.concatenate([a.shaft_hz for a in arrays])[record_ids]


@functools.lru_cache(maxsize=2)
def _background(path: str, n_train: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of seeded random training records, enough for ``size``, and their shaft speeds;
    read once per process.

    Whole records, not the whole split (which can be gigabytes); ``explain`` then draws
    ``size`` of these windows with the same seed. Dataset files are never rewritten in place.
    """
    count = min(n_train, math.ceil(size / _geometry(path).windows_per_record))
    picked = np.sort(np.random.default_rng(seed).choice(n_train, count, replace=False))
    windows, speeds = _records(path, "train", [int(r) for r in picked])
    windows.flags.writeable = speeds.flags.writeable = False  # shared by every later call in this process
    return windows, speeds


def _model_input(database: Database, experiment: dict[str, Any], dataset_id: str, path: str,
                 windows: np.ndarray) -> np.ndarray:
    """A record's windows normalised as the model's training data was.

    A signal from the training dataset already is; one from another dataset (a raw import, say)
    is z-scored per record for a model trained per record, and refused where it cannot be made
    to match (``conform_windows``).
    """
    from pipeline.datasets.geometry import check_fits_model
    from pipeline.signals.normalize import conform_windows

    if dataset_id == experiment["dataset_id"]:
        return windows
    train_path, _ = _dataset(database, experiment["dataset_id"], "train")
    model, data = _geometry(train_path), _geometry(path)
    check_fits_model(model, data, f"experiment {experiment['experiment_id']!r}")
    return conform_windows(windows, model_rule=model.normalization, data_rule=data.normalization,
                           windows_per_record=data.windows_per_record)


def _explain(payload: ExplainSignal, job: JobContext, database: Database, experiment: dict[str, Any],
             resolved: dict[str, Any], path: str, directory: Path) -> tuple[dict[str, Any], str, str]:
    """Load the model (cached), window(s) and background; explain; save the arrays and the plot."""
    from pipeline import xai
    from pipeline.models.registry import is_deep

    job.progress(0.0, "loading model")
    loaded = xai.get_model(experiment_file(experiment), experiment["model_sha256"])
    model_key = loaded.model_key or experiment["model_key"]
    geometry = _geometry(path)
    class_keys = loaded.meta.get("class_keys") or list(geometry.class_keys)
    record, speeds = _records(path, payload.signal.split, [payload.signal.record])
    windows = _model_input(database, experiment, payload.signal.dataset_id, path, record)
    shaft_hz = None if np.isnan(speeds[0]) else float(speeds[0])
    whole = payload.signal.window == "all"
    if whole and geometry.window_hop != geometry.window_length:
        raise InvalidInput("a whole record is explained window after window, which needs windows that do not "
                           f"overlap; this dataset's overlap by {geometry.window_length - geometry.window_hop} samples: "
                           "give a window index")
    if not whole and payload.signal.window >= len(windows):
        raise InvalidInput(f"window index {payload.signal.window} is out of range: a record of dataset "
                           f"{payload.signal.dataset_id!r} has {len(windows)} windows")
    # A whole record is its windows end to end in time ([k·L], or [C, k·L] for several channels).
    signal = np.concatenate(list(windows), axis=-1) if whole else windows[payload.signal.window]
    channel_names = geometry.channels if geometry.in_channels > 1 else None
    if payload.method == "activations":
        maps = xai.activation_maps(loaded.model, signal, model_key, resolved["layers"], job.progress, job.should_stop)
        npz = xai.save_activation_maps(directory / "activations.npz", maps)
        png = xai.plot_activation_maps(directory / "activations.png", signal, maps, class_keys,
                                       fs=geometry.sampling_rate, max_channels=resolved["max_channels"],
                                       channel_names=channel_names)
        return maps.to_dict(), str(npz), str(png)
    background = background_shaft_hz = None
    # Only SHAP (deep or classical) and classical LIME use training windows.
    if payload.method == "shap" or (payload.method == "lime" and not is_deep(model_key)):
        train_path, n_train = _dataset(database, experiment["dataset_id"], "train")
        background, background_shaft_hz = _background(train_path, n_train, resolved["background_size"],
                                                      resolved["seed"])
    explain = xai.explain_record if whole else xai.explain
    explanation = explain(loaded.model, model_key, windows if whole else signal, payload.method, resolved,
                          background=background, feature_fn=_features_at(geometry),
                          on_progress=job.progress, should_stop=job.should_stop,
                          shaft_hz=shaft_hz, background_shaft_hz=background_shaft_hz)
    npz = xai.save_explanation(directory / "explanation.npz", explanation)
    png = xai.plot_explanation(directory / "explanation.png", signal, explanation, class_keys=class_keys,
                               fs=geometry.sampling_rate, channel_names=channel_names)
    return explanation.to_dict(), str(npz), str(png)


def _features_at(geometry: Any):  # type: ignore[no-untyped-def]
    """A classical model's features of windows of the dataset's rate and channels, named as
    training named them (``"<channel>:<feature>"`` for several)."""
    from pipeline.features.extract import extract_window_features

    return lambda windows, shaft_hz: extract_window_features(
        windows, geometry.sampling_rate, channels=geometry.channels, shaft_hz=shaft_hz)


def _refuse(job: JobContext, exc: BaseException) -> dict[str, Any] | None:
    """Bad input: a fan-out member records it and returns (or the group's callback never
    fires); a lone job raises it (never retried)."""
    if job.fanout_id is None:
        raise exc
    job.fail(exc)
    return None


@job_actor(schema=ExplainSignal)
def explain_signal(payload: ExplainSignal, job: JobContext) -> dict[str, Any] | None:
    """Explain one window (or return the stored explanation); return its compact summary."""
    settings = get_settings()
    database = get_database(settings.database_url)
    signal = payload.signal.model_dump()
    try:
        experiment, resolved = _request(database, payload.experiment_id, payload.method, payload.params)
        path, _ = _dataset(database, signal["dataset_id"], signal["split"], signal["record"])
        key = store.explanation_key(payload.experiment_id, signal, payload.method, resolved)
        claim = store.claim_explanation(database, key, job.message_id, experiment_id=payload.experiment_id,
                                        signal=signal, method=payload.method, params=resolved)
    except REFUSED as exc:
        return _refuse(job, exc)
    if claim.done:
        return claim.summary
    try:
        record, npz, png = _explain(payload, job, database, experiment, resolved, path,
                                    settings.artifact_root / "explanations" / key)
        return store.complete_explanation(database, key, job.message_id, npz_path=publish(npz), png_path=publish(png),
                                          summary=record)
    except BaseException as exc:
        store.fail_explanation(database, key, job.message_id, mask_secrets(f"{type(exc).__name__}: {exc}"))
        if isinstance(exc, REFUSED):
            return _refuse(job, exc)
        raise


def _selected(database: Database, select: SignalSelection | None) -> list[dict[str, Any]]:
    """The signals a selection names: records picked by class from the split's labels."""
    from pipeline.datasets.hdf5 import read_labels
    from pipeline.xai import stratified_records

    assert select is not None  # the schema requires signals or select
    path, _ = _dataset(database, select.dataset_id, select.split)
    records = stratified_records(read_labels(path, select.split), select.per_class)
    if len(records) > MAX_BATCH:
        raise InvalidInput(f"the selection picks {len(records)} signals, more than a batch's {MAX_BATCH}")
    return [SignalRef(dataset_id=select.dataset_id, split=select.split, record=r, window=select.window).model_dump()
            for r in records]


@job_actor(schema=ExplainBatch)
def explain_batch(payload: ExplainBatch, job: JobContext) -> dict[str, Any]:
    """Check the request, record the batch and fan its signals out; return at once with its ids."""
    settings = get_settings()
    database = get_database(settings.database_url)
    experiment, resolved = _request(database, payload.experiment_id, payload.method, payload.params)
    signals = [s.model_dump() for s in payload.signals] if payload.signals else _selected(database, payload.select)
    if len({tuple(s.values()) for s in signals}) != len(signals):
        raise InvalidInput("a batch lists the same signal more than once")
    batch_id = payload.batch_id or f"xb-{job.message_id}"
    fanout_id = f"xai-{batch_id}"
    existing = store.find_batch(database, batch_id)
    if existing is not None and existing["job_id"] != job.message_id:
        raise RecordConflict(f"explanation batch {batch_id!r} belongs to job {existing['job_id']}")
    if get_fanout(fanout_id) is None:  # a redelivered message must not fan out twice
        experiment_id, method = experiment["experiment_id"], payload.method
        members = [explain_signal.message(experiment_id=experiment_id, signal=s, method=method, params=resolved)
                   for s in signals]
        store.create_batch(database, batch_id, job.message_id, fanout_id=fanout_id, experiment_id=experiment_id,
                           method=method, params=resolved, members=[
                               {"signal": s, "job_id": m.message_id,
                                "explanation_id": store.explanation_key(experiment_id, s, method, resolved)}
                               for s, m in zip(signals, members)])
        fan_out(members, kind="xai_batch", owner_id=batch_id, fanout_id=fanout_id,
                finalize=finalize_explain_batch.message(batch_id=batch_id, fanout_id=fanout_id))
    return {"batch_id": batch_id, "fanout_id": fanout_id, "n_signals": len(signals), "status": "running"}


def _link(member: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """One signal's outcome: its explanation's files and prediction (and its method's warning, such
    as SHAP missing additivity), or why it failed."""
    link = {**member, "status": row["status"] if row else "failed", "error": row["error"] if row else None}
    if row and row["status"] == "completed":
        link.update(npz_path=row["npz_path"], png_path=row["png_path"],
                    predicted_class=row["summary"]["predicted_class"], confidence=row["summary"]["confidence"])
        warning = (row["summary"].get("extra") or {}).get("warning")
        if warning:
            link["warning"] = warning
    elif link["error"] is None:  # refused before it had a row: the member's job says why
        try:
            link["error"] = get_job(member["job_id"]).error_message
        except JobNotFound:
            link["error"] = "the member's job record is gone"
    return link


def _aggregate_plot(settings: Settings, database: Database, batch_id: str,
                    rows: list[dict[str, Any]]) -> str | None:
    """Plot mean |attribution| per explained class over the completed explanations, on the
    time axis of the signals' dataset.

    Only attributions of one length average together: activation maps have none, and a batch
    mixing whole records with windows is plotted over its more common length.
    """
    from collections import Counter

    from pipeline import xai

    rows = [row for row in rows if row["summary"].get("kind") in ("signal", "features")]
    if not rows:
        return None
    length = Counter(row["summary"]["length"] for row in rows).most_common(1)[0][0]
    rows = [row for row in rows if row["summary"]["length"] == length]
    names = xai.load_explanation(local_file(rows[0]["npz_path"])).feature_names
    # One file at a time: a big batch's attributions never sit in memory together.
    loaded = (xai.load_explanation(local_file(row["npz_path"])) for row in rows)
    means = xai.mean_abs_attribution_by_class((e.target_class, e.attributions) for e in loaded)
    path = settings.artifact_root / "explanations" / "batches" / batch_id / "class_mean_attribution.png"
    fs = _geometry(dataset_file(get_dataset(database, rows[0]["signal"]["dataset_id"]))).sampling_rate
    return publish(xai.plot_class_mean_attribution(path, dict(sorted(means.items())), feature_names=names, fs=fs))


def _completed_event(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``xai.completed`` outbox row of a batch that just finished, one per batch."""
    return [outbox_event("xai.completed", {"explanation_id": batch["batch_id"], "method": batch["method"],
                                           "n_signals": batch["n_signals"], "n_failed": batch["failed"],
                                           "job_id": batch["job_id"]}, event_id=f"xai-{batch['batch_id']}")]


@job_actor(schema=FinalizeExplainBatch)
def finalize_explain_batch(payload: FinalizeExplainBatch, job: JobContext) -> dict[str, Any]:
    """Write the batch's counts, links and aggregate plot once; finish the fan-out; notify."""
    settings = get_settings()
    database = get_database(settings.database_url)
    batch = store.get_batch(database, payload.batch_id)
    if batch["status"] == "running":
        rows = store.find_explanations(database, [m["explanation_id"] for m in batch["members"]])
        links = [_link(m, rows.get(m["explanation_id"])) for m in batch["members"]]
        # The batch's counts are its links' (the members' explanation rows): one source for both.
        done = sum(link["status"] == "completed" for link in links)
        failed = len(links) - done
        plot = _aggregate_plot(settings, database, payload.batch_id,
                               [r for r in rows.values() if r["status"] == "completed"])
        batch = store.finish_batch(database, payload.batch_id, status="completed" if done else "failed", done=done,
                                   failed=failed, links=links, plot_path=plot, events=_completed_event)
        log.info("xai.batch_finalized", batch_id=payload.batch_id, done=done, failed=failed)
    # Idempotent from here on: a redelivered finalize repeats these; its event committed with the batch.
    fanout_store().finish(payload.fanout_id, "completed",
                          {"batch_id": payload.batch_id, "done": batch["done"], "failed": batch["failed"]})
    relay_now([f"xai-{payload.batch_id}"])
    return {key: batch[key] for key in ("batch_id", "fanout_id", "status", "n_signals", "done", "failed", "plot_path")}


def explanation_batch(batch_id: str) -> dict[str, Any]:
    """A batch as callers see it: its record, with live counts and progress (the mean of its
    members') from the fan-out while it runs. Raises ``RecordNotFound``."""
    batch = store.get_batch(get_database(get_settings().database_url), batch_id)
    view = get_fanout(batch["fanout_id"]) if batch["status"] == "running" else None
    live = {"progress": view.progress, "done": view.done, "failed": view.failed} if view else {}
    return {**batch, "progress": 0.0 if batch["status"] == "running" else 1.0, **live}
