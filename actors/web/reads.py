"""Reads the pages and the API share, each through the same function the ``pfd`` command calls.

They turn a missing job, record, queue or file into the HTTP error that says so.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status

from actors.platform.errors import JobNotFound, RecordNotFound
from actors.store.jobs import JobView
from actors.store.trees import JobTree
from config.queues import QUEUES
from config.settings import Settings

__all__ = ["artifact_file", "dataset_description", "job_listing", "known_queue", "plot_paths", "record_or_404",
           "training_run", "tree_or_404"]


def tree_or_404(any_id: str) -> JobTree:
    """The tree ``any_id`` names (a message, fan-out or record id), or 404."""
    from actors.platform.jobs import get_tree

    try:
        return get_tree(any_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def record_or_404(kind: str, record_id: str) -> dict[str, Any]:
    """One domain record of ``kind`` (a key of ``RECORD_KINDS``), or 404."""
    from actors.platform.jobs import job_store
    from actors.store.listings import RECORD_KINDS, get_record

    if kind not in RECORD_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no record kind {kind!r}; known: {', '.join(RECORD_KINDS)}")
    try:
        return get_record(job_store().database, kind, record_id)
    except RecordNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def job_listing(
    *, state: str | None, actor: str | None, queue: str | None, root: str | None,
    since: datetime | None, limit: int, offset: int,
) -> list[JobView]:
    """Recorded jobs, newest first, as ``pfd jobs`` lists them."""
    from actors.platform.jobs import job_store
    from actors.store.listings import list_jobs

    return list_jobs(job_store().database, state=state or None, actor=actor or None, queue=queue or None,
                     root_id=root or None, since=since, limit=limit, offset=offset)


def known_queue(queue: str) -> str:
    """``queue`` if it is one of the topology's queues, else 404 naming them."""
    if queue not in QUEUES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r}; known: {', '.join(QUEUES)}")
    return queue


def artifact_file(settings: Settings, path: str) -> Path:
    """The file a record names: a store key (fetched through the artifact store), or an
    absolute path under the artifact root (records written before the store); 404 for
    anything else or missing.

    A path is resolved (links and ``..`` followed) before it is checked, so no name
    reaches a file outside the root; a key is checked by the store.
    """
    from actors.platform.artifact_files import local_file
    from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing
    from pipeline.errors import InvalidInput

    if not Path(path).is_absolute():
        try:
            return local_file(path, settings=settings)
        except (ArtifactMissing, ArtifactCorrupt, InvalidInput):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact in the artifact store") from None
    root = settings.artifact_root.resolve()
    target = Path(path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact under the artifact root")
    return target


def plot_paths(settings: Settings, *values: Any) -> list[str]:
    """Every PNG file named anywhere in ``values`` (records, results), as paths under the artifact root."""
    root = settings.artifact_root.resolve()
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.lower().endswith(".png"):
            target = (root / value).resolve()
            if not target.is_relative_to(root):
                return
            key = target.relative_to(root).as_posix()
            if key not in found and (target.is_file() or _stored(settings, key)):
                found.append(key)

    for value in values:
        walk(value)
    return found


def _stored(settings: Settings, key: str) -> bool:
    """Whether the artifact store holds ``key`` (another host wrote it into an object store)."""
    from actors.platform.artifact_files import artifact_store, store_is_artifact_root
    from actors.platform.artifacts import ArtifactMissing
    from pipeline.errors import InvalidInput

    if store_is_artifact_root(settings):
        return False  # the file under the root was looked for already
    try:
        artifact_store(settings).stat(key)
    except (ArtifactMissing, InvalidInput):
        return False
    return True


def dataset_description(settings: Settings, dataset: dict[str, Any]) -> dict[str, Any] | None:
    """What a dataset holds, from its file's geometry: classes with their display names, rate,
    channels, record and window lengths, normalisation; None while it has no readable file."""
    from pipeline.datasets.hdf5 import read_geometry
    from pipeline.errors import DatasetFileError

    if dataset.get("status") != "completed" or not dataset.get("path"):
        return None
    try:
        geometry = read_geometry(artifact_file(settings, dataset["path"]))
    except (HTTPException, DatasetFileError):
        return None  # the page says the file is missing or unreadable instead
    rate = geometry.sampling_rate
    return {
        "classes": [(key, geometry.display_names.get(key, key)) for key in geometry.class_keys],
        "sampling_rate_hz": rate, "channels": list(geometry.channels),
        "record": f"{geometry.record_length:,} samples ({geometry.record_length / rate:g} s)",
        "window": f"{geometry.window_length:,} samples ({geometry.window_length / rate:g} s), "
                  f"every {geometry.window_hop:,}: {geometry.windows_per_record} per record",
        "normalization": geometry.normalization,
    }


def training_run(settings: Settings, experiment: dict[str, Any]) -> dict[str, Any] | None:
    """How a completed experiment trained, from its metrics file: device, precision, whether
    its data was read from the file in groups, throughput, time spent waiting for data, its
    model arguments and the training options it set away from their defaults."""
    import json

    from pipeline.training import TrainingConfig

    if not experiment.get("metrics_path"):
        return None
    try:
        recorded = json.loads(artifact_file(settings, experiment["metrics_path"]).read_text())
    except (HTTPException, ValueError):
        return None
    keys = ("device", "precision", "data_stored", "train_windows_per_s", "data_wait_fraction", "stopped_early",
            "resumed_from_epoch", "model_args")
    defaults = TrainingConfig().to_dict()
    options = {key: value for key, value in (recorded.get("config") or {}).items() if defaults.get(key) != value}
    return {**{key: recorded.get(key) for key in keys}, "options": options}
