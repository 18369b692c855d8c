"""Dataset actors (``cpu_processing``): generate a dataset, import recordings (MAT files, tables)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, create_model, model_validator

from actors.notifications import outbox_event, relay_now
from actors.platform.artifact_files import artifact_store, publish, store_is_artifact_root
from actors.platform.artifacts import checked_key
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.platform.references import RecordId
from actors.store.datasets import claim_dataset, complete_dataset, fail_dataset, record_import
from actors.store.db import Database, get_database
from config.settings import Settings, get_settings, mask_secrets
from pipeline.artifacts import file_sha256
from pipeline.domain import CLASS_KEYS, SEVERITY_BANDS
from pipeline.errors import InvalidInput, UnsafePath
from pipeline.signals.config import AugmentationConfig, NoiseConfig

__all__ = ["GenerateDataset", "ImportMatDataset", "ImportTableDataset", "LabelMap", "generate_dataset",
           "import_mat_dataset", "import_table_dataset"]

FaultKey = Literal[CLASS_KEYS]  # type: ignore[valid-type]
SeverityBand = Literal[tuple(SEVERITY_BANDS)]  # type: ignore[valid-type]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def _switches(name: str, config: type) -> type[Payload]:
    """A payload model with one bool per field of a generator dataclass, same defaults."""
    return create_model(name, __base__=Payload, __doc__=config.__doc__,
                        **{f.name: (bool, f.default) for f in dataclass_fields(config)})


NoiseLayers = _switches("NoiseLayers", NoiseConfig)
Augmentation = _switches("Augmentation", AugmentationConfig)


class GenerateDataset(Payload):
    """Payload of ``generate_dataset``: what to generate, and in which formats."""

    dataset_id: RecordId | None = Field(None, description="the new dataset's id (default: ds-<message id>)")
    name: str = Field("", max_length=200)
    fault_types: list[FaultKey] = Field(default_factory=lambda: list(CLASS_KEYS), min_length=1, max_length=len(CLASS_KEYS))
    records_per_class: int = Field(10, ge=1, le=5_000)
    severities: list[SeverityBand] = Field(default_factory=lambda: list(SEVERITY_BANDS), min_length=1)
    noise: NoiseLayers = NoiseLayers()  # type: ignore[valid-type]
    speed_variation: float = Field(0.1, ge=0.0, le=0.5)
    load_range: tuple[float, float] = (30.0, 100.0)
    temperature_range: tuple[float, float] = (40.0, 80.0)
    severity_ramp_probability: Probability = 0.30
    transient_probability: Probability = 0.25
    augmentation: Augmentation = Augmentation()  # type: ignore[valid-type]
    seed: int = Field(42, ge=0, le=2**31 - 1)
    split_ratios: tuple[Probability, Probability, Probability] = (0.70, 0.15, 0.15)
    output_format: Literal["hdf5", "mat", "both"] = "hdf5"
    compression: Literal["gzip", "none"] = Field(
        "gzip", description="how the HDF5 file stores each record: gzip (42 % of the size) or none "
                            "(raw: 2.4x the disk, read about 6x faster when training reads it from the file)")

    @model_validator(mode="after")
    def _generator_accepts(self) -> GenerateDataset:
        # The generator's own checks (ranges, ratios) run on send too: one source of truth.
        self.generator_config()
        return self

    def generator_config(self):  # type: ignore[no-untyped-def]
        """The ``GeneratorConfig`` this payload describes (validated)."""
        from pipeline.signals.config import GeneratorConfig

        return GeneratorConfig.from_dict(
            self.model_dump(exclude={"dataset_id", "name", "output_format", "compression"})).validate()

    def formats(self) -> tuple[str, ...]:
        """The file formats to write."""
        return ("hdf5", "mat") if self.output_format == "both" else (self.output_format,)


ClassKey = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class LabelMap(Payload):
    """Where each file's class comes from, in the user's own classes: exactly one of ``patterns``
    (glob on the path below the import root -> class), ``variable`` (a MAT variable holding the
    class) or ``manifest`` (a CSV under the import root: ``path``, ``label``, optional ``group``,
    ``fs`` and metadata columns such as ``rpm``). ``classes`` declares the class set and order."""

    patterns: dict[PathText, ClassKey] = Field(default_factory=dict, max_length=1000)
    variable: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    manifest: PathText | None = None
    classes: list[ClassKey] | None = Field(None, min_length=2, max_length=1000)
    display_names: dict[ClassKey, Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> LabelMap:
        if [bool(self.patterns), self.variable is not None, self.manifest is not None].count(True) != 1:
            raise ValueError("a label rule takes exactly one of: patterns, variable, manifest")
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"declared classes repeat a key: {self.classes}")
            outside = sorted(set(self.patterns.values()) - set(self.classes))
            if outside:
                raise ValueError(f"patterns name class(es) {outside} that are not among the declared classes")
        return self


class ImportMatDataset(Payload):
    """Payload of ``import_mat_dataset``: MAT files or folders under an import root."""

    paths: list[PathText] = Field(min_length=1, max_length=100_000)
    dataset_id: RecordId | None = Field(None, description="the new dataset's id (default: ds-<message id>)")
    name: str = Field("", max_length=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    split_ratios: tuple[Probability, Probability, Probability] = (0.70, 0.15, 0.15)
    label: FaultKey | None = None  # every file's class; a file saying otherwise is refused
    labels: LabelMap | None = Field(None, description="a label rule in the dataset's own classes (instead of the "
                                                      "generator's 11 keys)")
    channels: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, min_length=1, max_length=64, description="variables or columns to keep as channels, by name or "
                                                       "pattern ('*_DE_time'); default: the one signal found by name")
    channel_names: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        None, max_length=64, description="the channels' names in the dataset, in order (default: as given in channels)")
    sampling_rate: Annotated[float, Field(gt=0, le=10_000_000)] | Literal["native"] = Field(
        20_480.0, description="the dataset's rate in Hz (recordings are resampled to it), or 'native'")
    source_fs: Annotated[float, Field(gt=0, le=10_000_000)] | None = Field(
        None, description="the rate of recordings that store none (a manifest's fs column wins)")
    record_seconds: Annotated[float, Field(gt=0)] | None = None
    record_samples: Annotated[int, Field(gt=0)] | None = None
    window_seconds: Annotated[float, Field(gt=0)] | None = None
    window_samples: Annotated[int, Field(gt=0)] | None = None
    overlap: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    normalize: Literal["none", "file", "record"] = Field(
        "none", description="z-score each source file ('file': one mean and std over its samples) or each "
                            "record ('record'), each channel apart; the rule and its statistics are recorded")
    from_store: bool = Field(False, description="paths (and a label manifest) are artifact-store keys, a folder-like "
                                                "key taking every object under it, instead of paths under an import root")

    @model_validator(mode="after")
    def _layout_accepted(self) -> ImportMatDataset:
        if self.label is not None and self.labels is not None:
            raise ValueError("give labels (a rule) or label (one generator class for every file), not both")
        if self.from_store:
            for key in self.paths + ([self.labels.manifest] if self.labels and self.labels.manifest else []):
                checked_key(key.rstrip("/"))
        self.layout()
        return self

    def layout(self):  # type: ignore[no-untyped-def]
        """The ``RecordingLayout`` this payload describes (validated)."""
        from pipeline.datasets.importer import RecordingLayout

        return RecordingLayout(
            channels=tuple(self.channels) if self.channels else None,
            channel_names=tuple(self.channel_names) if self.channel_names else None,
            sampling_rate=None if self.sampling_rate == "native" else self.sampling_rate,
            source_fs=self.source_fs, record_seconds=self.record_seconds, record_samples=self.record_samples,
            window_seconds=self.window_seconds, window_samples=self.window_samples, overlap=self.overlap)


class ImportTableDataset(ImportMatDataset):
    """Payload of ``import_table_dataset``: CSV, Parquet or NPY files (one recording each) under an import
    root; tables store no rate, so ``source_fs`` or a manifest's ``fs`` column gives it."""


@contextmanager
def _failure_recorded(database: Database, dataset_id: str, job_id: str) -> Iterator[None]:
    """Mark the dataset failed with the reason if the work inside raises, then re-raise."""
    try:
        yield
    except BaseException as exc:
        fail_dataset(database, dataset_id, job_id, mask_secrets(f"{type(exc).__name__}: {exc}"))
        raise


@job_actor(schema=GenerateDataset)
def generate_dataset(payload: GenerateDataset, job: JobContext) -> dict:
    """Generate a dataset with the DOMAIN.md physics and record it."""
    from pipeline.datasets.generate import generate_dataset as generate

    settings = get_settings()
    database = get_database(settings.database_url)
    config = payload.generator_config()
    dataset_id = payload.dataset_id or f"ds-{job.message_id}"
    claim = claim_dataset(database, dataset_id, job.message_id, source="generator", name=payload.name, config=config.to_dict())
    if claim.done:
        return claim.summary
    with _failure_recorded(database, dataset_id, job.message_id):
        produced = generate(
            config, settings.artifact_root / "datasets", dataset_id, payload.formats(),
            on_progress=job.progress, should_stop=job.should_stop,
            workers=settings.generation_workers or None, overwrite=True, compression=payload.compression,
        )
        checksum = file_sha256(produced.hdf5_path) if produced.hdf5_path else None
        # Published before the record names it: a reader on any host finds it whole.
        key = publish(produced.hdf5_path, checksum) if produced.hdf5_path else None
    # The event id is the dataset's, and it commits with the dataset: announced once, never lost.
    event = outbox_event("dataset.generated", {"job_id": job.message_id, "dataset_id": dataset_id, "name": payload.name,
                                               "n_records": produced.n_records}, event_id=f"dataset.generated:{dataset_id}")
    summary = complete_dataset(
        database, dataset_id, job.message_id, path=key, mat_dir=produced.mat_dir,
        checksum=checksum, n_records=produced.n_records, class_counts=produced.class_counts,
        split_counts=produced.split_counts, config_hash=produced.config_hash, events=[event],
    )
    relay_now([event["event_id"]])
    return summary


def _import_root(paths: list[str], roots: tuple[Path, ...]) -> Path:
    """Return the configured import root that holds every path, or refuse them."""
    from pipeline.datasets.matio import resolve_under_root

    for root in roots:
        try:
            for path in paths:
                resolve_under_root(path, root)
        except UnsafePath:
            continue
        return root
    raise UnsafePath(
        f"every path must lie under one import root ({', '.join(str(r) for r in roots)}); "
        f"refused: {', '.join(paths[:5])}"
    )


@job_actor(schema=ImportMatDataset)
def import_mat_dataset(payload: ImportMatDataset, job: JobContext) -> dict:
    """Import MATLAB files (v4 to v7.3) into a dataset in the standard HDF5 layout."""
    from pipeline.datasets.importer import MAT_SUFFIXES

    return _import(payload, job, "mat_import", MAT_SUFFIXES)


@job_actor(schema=ImportTableDataset)
def import_table_dataset(payload: ImportTableDataset, job: JobContext) -> dict:
    """Import CSV, Parquet or NPY recordings (a column per channel) into a dataset in the standard HDF5 layout."""
    from pipeline.datasets.tables import TABLE_SUFFIXES

    return _import(payload, job, "table_import", TABLE_SUFFIXES)


def _label_rule(labels: LabelMap | None, root: Path):  # type: ignore[no-untyped-def]
    """The pipeline's label rule, its manifest read from under the import root."""
    from pipeline.datasets.importer import resolve_under_root
    from pipeline.datasets.labels import LabelRule, read_manifest

    if labels is None:
        return None
    manifest = read_manifest(resolve_under_root(labels.manifest, root), root) if labels.manifest else None
    return LabelRule(patterns=labels.patterns, variable=labels.variable, manifest=manifest,
                     classes=tuple(labels.classes) if labels.classes else None, display_names=labels.display_names)


@contextmanager
def _from_store(keys: list[str], settings: Settings) -> Iterator[Path]:
    """A folder holding the artifact store's objects under ``keys`` at their keys' paths: the
    artifact root itself when it is the store, else a copy fetched to this host for the import."""
    if store_is_artifact_root(settings):
        yield settings.artifact_root
        return
    store = artifact_store(settings)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.var_dir, prefix="import-") as staged:
        for name in keys:
            found = store.keys(name)
            if not found:
                raise InvalidInput(f"nothing in the artifact store {store.url} under {name!r}")
            for key in found:
                target = Path(staged) / key
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(store.fetch(key), target)
        yield Path(staged)


def _import(payload: ImportMatDataset, job: JobContext, source: str, suffixes: tuple[str, ...]) -> dict:
    """Claim the dataset, import the recordings, record the outcome and announce it (one fact)."""
    from pipeline.datasets.importer import import_recordings
    from pipeline.errors import MatFileError

    settings = get_settings()
    database = get_database(settings.database_url)
    named = payload.paths + ([payload.labels.manifest] if payload.labels and payload.labels.manifest else [])
    import_root = None if payload.from_store else _import_root(named, settings.import_roots)  # refused before the claim
    dataset_id = payload.dataset_id or f"ds-{job.message_id}"
    claim = claim_dataset(database, dataset_id, job.message_id, source=source, name=payload.name,
                          config=payload.model_dump(mode="json", exclude={"dataset_id", "name"}))
    if claim.done:
        return claim.summary
    with (_failure_recorded(database, dataset_id, job.message_id),
          contextlib.nullcontext(import_root) if import_root else _from_store(named, settings) as root):
        try:
            imported = import_recordings(
                payload.paths, root, settings.artifact_root / "datasets", dataset_id,
                labels=_label_rule(payload.labels, root), layout=payload.layout(),
                on_progress=job.progress, should_stop=job.should_stop,
                split_ratios=payload.split_ratios, seed=payload.seed, label=payload.label,
                normalize=payload.normalize, suffixes=suffixes,
            )
        except MatFileError as error:
            # Every file failed: the job's message names the first reasons, the record all.
            failures = getattr(error, "failures", None)
            if failures is not None:
                record_import(database, dataset_id, job.message_id, sources=payload.paths,
                              n_files=len(failures), failures=failures)
            raise
        checksum = file_sha256(imported.hdf5_path)
        key = publish(imported.hdf5_path, checksum)
    record_import(database, dataset_id, job.message_id, sources=payload.paths,
                  n_files=imported.n_files, failures=imported.failures)
    event = outbox_event("dataset.imported", {"job_id": job.message_id, "dataset_id": dataset_id, "name": payload.name,
                                              "n_records": imported.n_records, "n_files": imported.n_files,
                                              "n_failed": len(imported.failures)}, event_id=f"dataset.imported:{dataset_id}")
    summary = complete_dataset(
        database, dataset_id, job.message_id, path=key, checksum=checksum,
        n_records=imported.n_records, class_counts=imported.class_counts,
        split_counts=imported.split_counts, config_hash=imported.config_hash, events=[event],
    )
    relay_now([event["event_id"]])
    return {**summary, "n_files": imported.n_files, "failures": imported.failures}
