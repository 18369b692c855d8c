"""Feature actors (``cpu_processing``): extract a dataset's features once, rank and select them.

``extract_features`` records the feature set of (dataset, domains) under an id derived
from both, so every later request (and every ranking actor) reuses the file. A dataset of
more than ``records_per_shard`` records is cut into record ranges extracted in parallel by
``extract_feature_shard`` messages (a fan-out), merged by ``merge_feature_shards`` on
``high_priority``. The rankings run on the recorded features, extracting them first (in
this job) when none are recorded yet.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from actors.platform.artifact_files import (
    artifact_key,
    artifact_store,
    local_file,
    publish,
    restore,
    store_is_artifact_root,
)
from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.errors import RecordNotFound
from actors.platform.fanout import fan_out, fanout_store
from actors.platform.references import DatasetId, RecordId
from actors.record_files import dataset_file
from actors.store.analyses import (
    claim_analysis,
    claim_feature_set,
    complete_analysis,
    complete_feature_set,
    fail_analysis,
    fail_feature_set,
    failure_recorded,
    get_feature_set,
    update_feature_set,
)
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from config.settings import get_settings
from pipeline.errors import DatasetFileError, InvalidInput
from pipeline.progress import scaled

__all__ = ["ExtractFeatures", "compute_correlation", "compute_importance", "extract_feature_shard",
           "extract_features", "feature_set_id", "merge_feature_shards", "select_features"]



def _domains(value: list[str] | None) -> list[str]:
    """Every domain when none is named; else the named ones, checked, in canonical order."""
    from pipeline.features.extract import DOMAINS, feature_names

    if value is None:
        return list(DOMAINS)
    feature_names(value)  # the pipeline's own check: one list of valid domains
    return [d for d in DOMAINS if d in value]


def feature_set_id(dataset_id: str, domains: list[str]) -> str:
    """The id of the feature set of ``dataset_id`` for ``domains`` (canonical order)."""
    from pipeline.features.extract import DOMAINS

    return f"fs-{dataset_id}-{'all' if list(domains) == list(DOMAINS) else '+'.join(domains)}"


class FeatureSource(Payload):
    """A dataset and the feature domains to use (all five when ``domains`` is left out).

    The old tasks' ``domain`` (one name, or ``"all"``) is accepted as an alias of ``domains``.
    """

    dataset_id: DatasetId
    domains: list[str] | None = Field(None, min_length=1, max_length=5)

    @model_validator(mode="before")
    @classmethod
    def _domain_alias(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "domain" not in data:
            return data
        data = dict(data)
        domain = data.pop("domain")
        if data.get("domains") is not None:
            raise ValueError("give 'domains' or its alias 'domain', not both")
        if not isinstance(domain, str):
            raise ValueError(f"'domain' must be a domain name or 'all', got {domain!r}")  # noqa: TRY004  (pydantic reports ValueError)
        data["domains"] = None if domain == "all" else [domain]
        return data

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _domains(value)


class ExtractFeatures(FeatureSource):
    """Payload of ``extract_features``; larger datasets are cut into shards of this many records."""

    records_per_shard: int = Field(100, ge=1, le=100_000)


class FeatureShard(Payload):
    """One shard of a fan-out extraction: records ``[start, stop)`` of one split."""

    feature_set_id: Annotated[str, StringConstraints(min_length=1, max_length=160)]
    owner_job_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    index: int = Field(ge=0)
    split: Literal["train", "val", "test"]
    start: int = Field(ge=0)
    stop: int = Field(ge=0)


class MergeShards(Payload):
    """The finalize message of a fan-out extraction."""

    feature_set_id: Annotated[str, StringConstraints(min_length=1, max_length=160)]
    owner_job_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    shards: int = Field(ge=1)
    fanout_id: str | None = None


class FeatureAnalysis(FeatureSource):
    """Common fields of the ranking actors: rows of the ``train`` split (default) or ``all``."""

    analysis_id: RecordId | None = None
    split: Literal["train", "all"] = "train"


class ComputeImportance(FeatureAnalysis):
    """Payload of ``compute_importance``."""

    methods: list[str] | None = Field(None, min_length=1, max_length=3)
    top: int = Field(20, ge=1, le=36)
    random_state: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str] | None) -> list[str] | None:
        from pipeline.evaluation.rankings import check_importance_methods

        check_importance_methods(value)
        return value


class SelectFeatures(FeatureAnalysis):
    """Payload of ``select_features``; ``threshold`` applies to ``variance_threshold`` only."""

    method: str
    k: int | None = Field(None, ge=1)
    threshold: float | None = Field(None, ge=0)
    random_state: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _valid_for_the_features(self) -> SelectFeatures:
        from pipeline.evaluation.rankings import check_selection

        # How many columns there are to keep depends on the dataset's channels (the domains'
        # features per channel): the worker checks ``k`` against the feature set itself.
        check_selection(self.method, self.k, None, self.threshold)
        return self


class ComputeCorrelation(FeatureAnalysis):
    """Payload of ``compute_correlation``: pairs with ``|r| >= threshold`` are listed."""

    threshold: float = Field(0.9, ge=0.0, le=1.0)


def _ready_dataset(database: Database, dataset_id: str) -> dict[str, Any]:
    """A completed dataset with its records per split, its ``path`` the file on this host."""
    dataset = get_dataset(database, dataset_id)
    if dataset["status"] != "completed" or not dataset["path"]:
        raise DatasetFileError(f"dataset {dataset_id!r} is {dataset['status']} or its file is missing")
    dataset["path"] = str(dataset_file(dataset))
    if not dataset["split_counts"]:
        from pipeline.datasets.hdf5 import dataset_info

        dataset["split_counts"] = dataset_info(dataset["path"])["split_counts"]
    return dataset


def _claim(database: Database, fs_id: str, dataset: dict[str, Any], domains: list[str], job: JobContext):  # type: ignore[no-untyped-def]
    """Claim the feature set; a recorded one whose file is intact comes back ``done``."""
    args = {"dataset_id": dataset["dataset_id"], "domains": domains, "dataset_checksum": dataset["checksum"]}
    claim = claim_feature_set(database, fs_id, job.message_id, **args)
    if claim.done:
        try:
            if claim.summary["path"] and local_file(claim.summary["path"], claim.summary["checksum"]):
                return claim
        except (ArtifactMissing, ArtifactCorrupt):
            pass  # the file is gone or altered: extract again
        claim = claim_feature_set(database, fs_id, job.message_id, redo=True, **args)
    return claim


def _complete(database: Database, fs_id: str, owner: str, features: Any, dataset: dict[str, Any], shards: int) -> dict:
    """Save the merged features under the artifact root and record the set completed."""
    from pipeline.evaluation.feature_sets import save_parts

    domains = get_feature_set(database, fs_id)["domains"]
    path = get_settings().artifact_root / "features" / dataset["dataset_id"] / f"{fs_id}.npz"
    saved = save_parts(path, features, {"feature_set_id": fs_id, "dataset_id": dataset["dataset_id"],
                                        "domains": domains, "dataset_checksum": dataset["checksum"], "shards": shards})
    return complete_feature_set(database, fs_id, owner, shards=shards,
                                **{**saved, "path": publish(saved["path"], saved["checksum"])})


def _extract_here(database: Database, fs_id: str, dataset: dict, domains: list[str], job: JobContext,
                  on_progress: Callable[..., None]) -> dict:
    """Extract the whole dataset in this job and record the set (small sets, rankings)."""
    from pipeline.evaluation.feature_sets import extract_dataset_features

    with failure_recorded(fail_feature_set, database, fs_id, job.message_id):
        features = extract_dataset_features(dataset["path"], dataset["split_counts"], domains,
                                            on_progress=on_progress, should_stop=job.should_stop)
        return _complete(database, fs_id, job.message_id, features, dataset, shards=1)


def _parts_dir(fs_id: str, owner_job_id: str) -> Path:
    """Where the shards of one run write their parts (one folder per run: runs never mix)."""
    return get_settings().artifact_root / "features" / "parts" / f"{fs_id}.{owner_job_id}"


@job_actor(schema=ExtractFeatures)
def extract_features(payload: ExtractFeatures, job: JobContext) -> dict:
    """Extract (or reuse) the dataset's features; large datasets as a fan-out of record shards."""
    from pipeline.evaluation.feature_sets import plan_shards

    database = get_database(get_settings().database_url)
    dataset = _ready_dataset(database, payload.dataset_id)
    domains = payload.domains or _domains(None)
    fs_id = feature_set_id(payload.dataset_id, domains)
    claim = _claim(database, fs_id, dataset, domains, job)
    if claim.done:
        return {**claim.summary, "reused": True}
    if claim.summary.get("fanout_id"):  # redelivered after fanning out: never twice
        return {**claim.summary, "reused": False}
    if sum(dataset["split_counts"].values()) <= payload.records_per_shard:
        return {**_extract_here(database, fs_id, dataset, domains, job, job.progress), "reused": False}
    shards = plan_shards(dataset["split_counts"], payload.records_per_shard)
    with failure_recorded(fail_feature_set, database, fs_id, job.message_id):
        fanout_id = f"features-{job.message_id}"
        members = [extract_feature_shard.message(feature_set_id=fs_id, owner_job_id=job.message_id, index=i,
                                                 split=s.split, start=s.start, stop=s.stop)
                   for i, s in enumerate(shards)]
        merge = merge_feature_shards.message(feature_set_id=fs_id, owner_job_id=job.message_id,
                                             shards=len(shards), fanout_id=fanout_id)
        update_feature_set(database, fs_id, job.message_id, fanout_id=fanout_id, shards=len(shards))
        fan_out(members, kind="features", owner_id=fs_id, finalize=merge, fanout_id=fanout_id)
    return {**get_feature_set(database, fs_id), "reused": False, "merge_message_id": merge.message_id}


@job_actor(schema=FeatureShard)
def extract_feature_shard(payload: FeatureShard, job: JobContext) -> dict | None:
    """Extract one record range and save it as a part; a bad shard fails alone (``job.fail``)."""
    from pipeline.evaluation.feature_sets import Shard, extract_shard, save_parts

    database = get_database(get_settings().database_url)
    try:
        record = get_feature_set(database, payload.feature_set_id)
        dataset = _ready_dataset(database, record["dataset_id"])
        part = extract_shard(dataset["path"], Shard(payload.split, payload.start, payload.stop), record["domains"],
                             on_progress=job.progress, should_stop=job.should_stop)
    except (InvalidInput, RecordNotFound) as exc:
        job.fail(exc)
        return None
    path = _parts_dir(payload.feature_set_id, payload.owner_job_id) / f"shard-{payload.index:05d}.npz"
    saved = save_parts(path, part, {"feature_set_id": payload.feature_set_id, "shard": payload.index})
    publish(path, saved["checksum"])  # the merge may run on another host
    return {"feature_set_id": payload.feature_set_id, "index": payload.index, "n_windows": saved["n_windows"]}


@job_actor(schema=MergeShards)
def merge_feature_shards(payload: MergeShards, job: JobContext) -> dict:
    """Merge the shard parts in plan order and record the feature set; missing parts fail it."""
    from pipeline.evaluation.feature_sets import load_parts

    database = get_database(get_settings().database_url)
    fs_id, owner = payload.feature_set_id, payload.owner_job_id
    record = get_feature_set(database, fs_id)
    if record["status"] == "completed" or record["job_id"] != owner:
        return record  # merged already (a repeated callback), or another run took the set over
    # A "failed" set of this run is merged again: a retry after a transient fault, which
    # ``failure_recorded`` marked failed on the way out.
    parts_dir = _parts_dir(fs_id, owner)
    try:
        with failure_recorded(fail_feature_set, database, fs_id, owner):
            parts = [parts_dir / f"shard-{i:05d}.npz" for i in range(payload.shards)]
            for part in parts:  # those other hosts wrote; one missing everywhere fails the set
                restore(part)
            merged = load_parts(parts)
            summary = _complete(database, fs_id, owner, merged, get_dataset(database, record["dataset_id"]), payload.shards)
    except InvalidInput:
        _finish(payload, parts_dir, "failed")
        raise
    _finish(payload, parts_dir, "completed")
    return summary


def _finish(payload: MergeShards, parts_dir: Path, state: str) -> None:
    """Drop the parts and record the fan-out's outcome."""
    # Parts are scratch once merged or refused; a transient fault keeps them for the retry.
    shutil.rmtree(parts_dir, ignore_errors=True)
    if not store_is_artifact_root():
        store = artifact_store()
        for key in store.keys(artifact_key(parts_dir)):
            store.delete(key)
    if payload.fanout_id:
        fanout_store().finish(payload.fanout_id, state, {"feature_set_id": payload.feature_set_id})


def _analysis(payload: FeatureAnalysis, job: JobContext, kind: str,
              compute: Callable[[Any, Any, list[str], Path], tuple[dict, dict, str | None]]) -> dict:
    """Claim the analysis, get the features (reused or extracted here), compute, record."""
    from pipeline.features.store import load_feature_set
    from pipeline.training.metrics import json_safe

    settings = get_settings()
    database = get_database(settings.database_url)
    analysis_id = payload.analysis_id or f"an-{job.message_id}"
    params = payload.model_dump(mode="json", exclude={"analysis_id"})
    claim = claim_analysis(database, analysis_id, job.message_id, kind=kind, experiment_ids=[], params=params)
    if claim.done:
        return claim.summary
    with failure_recorded(fail_analysis, database, analysis_id, job.message_id):
        dataset = _ready_dataset(database, payload.dataset_id)
        domains = payload.domains or _domains(None)
        fs_id = feature_set_id(payload.dataset_id, domains)
        held = _claim(database, fs_id, dataset, domains, job)
        record = held.summary if held.done else _extract_here(
            database, fs_id, dataset, domains, job, scaled(job.progress, 0.0, 0.7))
        features = load_feature_set(local_file(record["path"], record["checksum"]))
        X, y = (features.values, features.labels) if payload.split == "all" else features.split("train")
        if X.shape[0] < 2:
            raise InvalidInput(f"the {payload.split} rows of feature set {fs_id!r} hold {X.shape[0]} window(s)")
        job.progress(0.7, f"computing {kind}")
        result, plots, artifact = compute(X, y, list(features.names), settings.artifact_root / "analyses" / analysis_id)
        result = json_safe({**result, "feature_set_id": fs_id, "n_rows": int(X.shape[0])})
        return complete_analysis(database, analysis_id, job.message_id, result=result,
                                 plot_paths={name: publish(path) for name, path in plots.items()},
                                 artifact_path=publish(artifact) if artifact else None, feature_set_id=fs_id)


@job_actor(schema=ComputeImportance)
def compute_importance(payload: ComputeImportance, job: JobContext) -> dict:
    """Rank features by mutual information, random-forest impurity and permutation; PNG bars."""
    from pipeline.evaluation.rankings import importance_report

    return _analysis(payload, job, "importance", lambda X, y, names, folder: importance_report(
        X, y, names, folder, methods=payload.methods, random_state=payload.random_state, top=payload.top))


@job_actor(schema=SelectFeatures)
def select_features(payload: SelectFeatures, job: JobContext) -> dict:
    """Select features (MRMR, variance, SelectKBest, RFE); saved as JSON for classical training."""
    from pipeline.evaluation.rankings import selection_report

    provenance = {"dataset_id": payload.dataset_id, "domains": payload.domains, "split": payload.split}
    return _analysis(payload, job, "selection", lambda X, y, names, folder: selection_report(
        X, y, names, folder, method=payload.method, k=payload.k, threshold=payload.threshold,
        random_state=payload.random_state, provenance=provenance))


@job_actor(schema=ComputeCorrelation)
def compute_correlation(payload: ComputeCorrelation, job: JobContext) -> dict:
    """Correlation matrix of the features, highly correlated pairs, PNG heat map."""
    from pipeline.evaluation.rankings import correlation_report

    return _analysis(payload, job, "correlation", lambda X, y, names, folder: correlation_report(
        X, names, folder, threshold=payload.threshold))
