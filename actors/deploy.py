"""Deployment actors (``cpu_processing``): export, optimise, quantise and benchmark a trained model.

``deploy_experiment`` records a deployment and sends the pipeline export -> optimize -> quantize -> benchmark.
Dramatiq passes each stage's summary to the next as its last positional argument: the deployment is found there.
A stage also runs alone, on a ``deployment_id`` or an ``experiment_id`` (then a deployment of its own). A failing
stage records which stage and why before raising; the pipeline stops there. The last stage marks the deployment
ready and sends ``deployment.ready``. Files live in ``artifact_root/deployments/<id>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import dramatiq
import numpy as np
import structlog
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded
from pydantic import AfterValidator, Field, StringConstraints, model_validator
from redis.exceptions import RedisError

from actors.base import Payload, job_actor
from actors.context import JobContext
from actors.errors import ActorError, JobNotFound, PayloadInvalid, RecordConflict
from actors.jobs import get_job
from actors.store import deployments as store
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from actors.store.experiments import get_experiment
from config.settings import get_settings, mask_secrets
from pipeline.artifacts import file_sha256
from pipeline.errors import DatasetFileError, InvalidInput, StopRequested
from pipeline.models import DEEP_KEYS
from pipeline.progress import scaled

__all__ = ["BenchmarkOptions", "DeployExperiment", "DeployOptions", "ExportOptions", "OptimizeOptions",
           "QuantizeOptions", "benchmark_models", "deploy_experiment", "export_onnx", "optimize_model", "quantize_model"]

log = structlog.get_logger("pfd.deploy")

# pipeline.deploy's limits, repeated so that a bad value is refused on send without importing torch
# (a test checks that they still equal the pipeline's).
MIN_OPSET, MAX_OPSET, MAX_PRUNE_AMOUNT = 14, 23, 0.95
# Quantisation method -> (variant name, kind, file name).
QUANTIZED = {"dynamic_int8": ("torch_dynamic_int8", "torch", "dynamic_int8.pt"),
             "static_int8": ("onnx_static_int8", "onnx", "static_int8.onnx"), "fp16": ("onnx_fp16", "onnx", "fp16.onnx")}


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("a value is listed twice")
    return values


RecordId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
WindowCap = Annotated[int | None, Field(ge=1, le=100_000)]  # at most this many windows of the split (None: all)
Method = Literal["dynamic_int8", "static_int8", "fp16"]
Methods = Annotated[list[Method], AfterValidator(_unique)]
BatchSizes = Annotated[list[Annotated[int, Field(ge=1, le=256)]], AfterValidator(_unique)]


class ExportOptions(Payload):
    """ONNX export: opset (None: the exporter's own), parity tolerance on logits, windows verified."""

    opset: int | None = Field(default=None, ge=MIN_OPSET, le=MAX_OPSET)
    tolerance: float = Field(default=1e-4, ge=0.0, le=1.0)
    max_windows: int = Field(default=256, ge=1, le=4096)


class OptimizeOptions(Payload):
    """Pruning (``prune_method`` None: none) then Conv-BN fusion, judged on the validation windows."""

    prune_method: Literal["l1_unstructured", "random_unstructured", "ln_structured"] | None = "l1_unstructured"
    amount: float = Field(default=0.3, ge=0.0, le=MAX_PRUNE_AMOUNT)
    fuse: bool = True
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    max_windows: WindowCap = None

    @model_validator(mode="after")
    def _does_something(self) -> OptimizeOptions:
        if self.prune_method is None and not self.fuse:
            raise ValueError("neither pruning nor fusion: the stage would do nothing")
        return self


class QuantizeOptions(Payload):
    """Which quantisations, per-channel static weights, how many training windows calibrate."""

    methods: Methods = Field(default_factory=lambda: list(get_args(Method)), min_length=1)
    per_channel: bool = True
    calibration_windows: int = Field(default=256, ge=1, le=4096)
    max_windows: WindowCap = None


class BenchmarkOptions(Payload):
    """Batch sizes, warm-up and timed runs, threads, on the test windows."""

    batch_sizes: BatchSizes = Field(default_factory=lambda: [1, 8, 32], min_length=1, max_length=6)
    warmup: int = Field(default=3, ge=0, le=100)
    runs: int = Field(default=30, ge=1, le=1000)
    threads: int = Field(default=1, ge=1, le=64)
    max_windows: WindowCap = None


class Target(Payload):
    """Which deployment a stage works on; neither id in a pipeline, where the piped summary says."""

    deployment_id: RecordId | None = None
    experiment_id: RecordId | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        if self.deployment_id and self.experiment_id:
            raise ValueError("give deployment_id or experiment_id, not both")
        return self


# Each stage's payload: its options plus the deployment it works on.
ExportOnnx, OptimizeModel, QuantizeModel, BenchmarkModels = (
    type(f"{options.__name__.removesuffix('Options')}Stage", (options, Target), {"__doc__": options.__doc__})
    for options in (ExportOptions, OptimizeOptions, QuantizeOptions, BenchmarkOptions))


class DeployOptions(Payload):
    """Every stage's options; with their defaults filled in, they are the config a deployment is keyed by."""

    export: ExportOptions = Field(default_factory=lambda: ExportOptions())
    optimize: OptimizeOptions = Field(default_factory=lambda: OptimizeOptions())
    quantize: QuantizeOptions = Field(default_factory=lambda: QuantizeOptions())
    benchmark: BenchmarkOptions = Field(default_factory=lambda: BenchmarkOptions())


class DeployExperiment(Payload):
    """Payload of ``deploy_experiment``: a completed deep-model experiment and the stages' options."""

    experiment_id: RecordId
    options: DeployOptions = Field(default_factory=DeployOptions)


def _experiment(database: Database, experiment_id: str) -> dict[str, Any]:
    """A completed deep-model experiment with its checkpoint file, plus its dataset's file path."""
    experiment = get_experiment(database, experiment_id)
    path = experiment["model_path"]
    if experiment["status"] != "completed" or not path or not Path(path).is_file():
        raise InvalidInput(f"experiment {experiment_id!r} has no checkpoint to deploy "
                           f"(status {experiment['status']}, model file {path or 'none'})")
    if experiment["model_key"] not in DEEP_KEYS:
        raise InvalidInput(f"experiment {experiment_id!r} trained {experiment['model_key']!r}: only deep models deploy")
    dataset_path = get_dataset(database, experiment["dataset_id"])["path"]
    if not dataset_path or not Path(dataset_path).is_file():
        raise DatasetFileError(f"the file of dataset {experiment['dataset_id']!r} is missing: {dataset_path}")
    return {**experiment, "dataset_path": dataset_path}


def _split(experiment: dict[str, Any], split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split's 1 s windows and labels; at most ``limit`` of them, spread evenly (so every class)."""
    from pipeline.datasets.hdf5 import read_windows

    windows, labels, _ = read_windows(experiment["dataset_path"], split)
    if limit is not None and len(windows) > limit:
        rows = np.linspace(0, len(windows) - 1, limit).round().astype(np.int64)
        windows, labels = windows[rows], labels[rows]
    return windows, labels


def _variant(name: str, kind: str, path: str, metrics: dict[str, Any], sha256: str | None = None) -> dict[str, Any]:
    """A variant as the deployment records it: file, size, checksum and metrics."""
    return {"name": name, "kind": kind, "path": str(path), "size": Path(path).stat().st_size,
            "sha256": sha256 or file_sha256(path), "metrics": metrics}


def _original(experiment: dict[str, Any]) -> dict[str, Any]:
    metrics = {"model_key": experiment["model_key"], "test_accuracy": experiment["test_accuracy"]}
    return _variant("torch_fp32", "torch", experiment["model_path"], metrics, experiment["model_sha256"])


def _deployment_id(database: Database, stage: str, payload: Any, job: JobContext, previous: Any) -> str:
    """The deployment named by the piped summary or the payload, or a new one for the payload's experiment."""
    if previous is not None:
        if not isinstance(previous, dict) or previous.get("stage") not in store.STAGES:
            raise InvalidInput(f"{stage} received {type(previous).__name__}, not a deployment stage's summary")
        if payload.experiment_id or payload.deployment_id not in (None, previous["deployment_id"]):
            raise InvalidInput(f"{stage} in a pipeline works on deployment {previous['deployment_id']!r} only")
        return previous["deployment_id"]
    if payload.deployment_id or not payload.experiment_id:
        if not payload.deployment_id:
            raise InvalidInput(f"{stage} needs deployment_id or experiment_id (or a previous stage's summary)")
        return payload.deployment_id
    deployment_id = f"dep-{job.message_id}"  # a redelivered message finds the deployment it created
    store.ensure_deployment(database, deployment_id, experiment_id=payload.experiment_id,
                            config={"stage": stage, **payload.model_dump(mode="json", exclude={"experiment_id"})},
                            original=_original(_experiment(database, payload.experiment_id)))
    return deployment_id


def _record_failure(database: Database, deployment_id: str, stage: str, job: JobContext, exc: BaseException) -> None:
    """Mark the stage and the deployment failed (or cancelled) with the reason, unless a retry follows."""
    actor = dramatiq.get_broker().actors.get(job.actor)
    if isinstance(exc, RecordConflict) or (actor and actor.options["retry_when"](job.attempt - 1, exc)):
        return  # another job holds the stage, or a retry follows
    cancelled = isinstance(exc, StopRequested) and job.cancel_seen
    timed_out = isinstance(exc, (StopRequested, TimeLimitExceeded)) and not cancelled
    reason = ("cancelled" if cancelled else "JobTimedOut: the stage passed its time limit" if timed_out
              else mask_secrets(f"{type(exc).__name__}: {exc}"))
    try:
        store.fail_stage(database, deployment_id, stage, job.message_id, reason, status="cancelled" if cancelled else "failed")
    except ActorError as store_exc:  # the stage's own error must still propagate
        log.error("deploy.record_failure_failed", stage=stage, error=mask_secrets(str(store_exc)))


def _run_stage(stage: str, payload: Any, job: JobContext, piped: tuple[Any, ...], work: Callable[..., tuple]) -> dict | None:
    """Find and claim the stage, run ``work(experiment, deployment, folder)``, record its variants and result."""
    if piped and piped[0] is None:
        job.outcome = "cancelled"  # the previous stage was cancelled: so is the rest of its pipeline
        return None
    settings = get_settings()
    database = get_database(settings.database_url)
    previous = piped[0] if piped else None
    deployment_id = _deployment_id(database, stage, payload, job, previous)
    claim = store.claim_stage(database, deployment_id, stage, job.message_id)
    if claim.done:
        return claim.summary
    try:
        experiment = _experiment(database, claim.deployment["experiment_id"])
        job.progress(0.0, stage)
        variants, result, fields = work(experiment, claim.deployment, settings.artifact_root / "deployments" / deployment_id)
        message = CurrentMessage.get_current_message()
        onward = message is not None and "pipe_target" in message.options  # a next stage will follow
        return store.complete_stage(
            database, deployment_id, stage, job.message_id, variants=variants, result=result,
            after=previous and {k: previous[k] for k in ("stage", "job_id")},
            status="ready" if stage == "benchmark" else "running" if onward else "partial", **fields)
    except BaseException as exc:
        _record_failure(database, deployment_id, stage, job, exc)
        raise


@job_actor(schema=ExportOnnx)
def export_onnx(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Export the experiment's checkpoint to ONNX, verified against torch on validation windows."""
    from pipeline.deploy.export import export_onnx as export

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        result = export(experiment["model_path"], folder / "model.onnx", _split(experiment, "val")[0],
                        opset=payload.opset, tolerance=payload.tolerance, max_windows=payload.max_windows,
                        on_progress=job.progress, should_stop=job.should_stop).to_dict()
        metrics = {k: v for k, v in result.items() if k not in ("path", "sha256", "size_bytes")}
        return [_variant("onnx_fp32", "onnx", result["path"], metrics, result["sha256"])], metrics, {}

    return _run_stage("export", payload, job, piped, work)


@job_actor(schema=OptimizeModel)
def optimize_model(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Prune (made permanent) and fuse Conv-BN; report sparsity, size and the validation accuracy change."""
    from pipeline.deploy.optimize import optimize_model as optimize

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        windows, labels = _split(experiment, "val", payload.max_windows)
        result = optimize(experiment["model_path"], folder / "optimized.pt", windows, labels,
                          prune_method=payload.prune_method, amount=payload.amount, fuse=payload.fuse, seed=payload.seed,
                          on_progress=job.progress, should_stop=job.should_stop).to_dict()
        name = "torch_pruned" if payload.prune_method else "torch_fused"
        brief = {k: result[k] for k in ("sparsity", "fused_pairs", "modules_before", "modules_after", "accuracy_change")}
        metrics = {k: v for k, v in result.items() if k != "path"}
        return [_variant(name, "torch", result["path"], metrics)], {"variant": name, **brief}, {}

    return _run_stage("optimize", payload, job, piped, work)


@job_actor(schema=QuantizeModel)
def quantize_model(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Dynamic INT8 (torch), static INT8 calibrated on training windows (ONNX QDQ) and FP16, each against FP32."""
    from pipeline.deploy import quantize as quant

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        windows, labels = _split(experiment, "val", payload.max_windows)
        onnx: str = next((v["path"] for v in deployment["variants"] if v["name"] == "onnx_fp32"), "")
        if not onnx and set(payload.methods) - {"dynamic_int8"}:
            raise InvalidInput(f"deployment {deployment['deployment_id']!r} has no ONNX model: run export_onnx first")
        variants, brief, count = [], {}, len(payload.methods)
        for index, method in enumerate(payload.methods):
            name, kind, filename = QUANTIZED[method]
            progress = scaled(job.progress, index / count, (index + 1) / count)
            common: dict[str, Any] = {"on_progress": progress, "should_stop": job.should_stop}
            if method == "dynamic_int8":
                result = quant.quantize_dynamic_torch(experiment["model_path"], folder / filename, windows, labels, **common)
            elif method == "static_int8":  # calibrated on the dataset's real training windows, never on noise
                result = quant.quantize_static_onnx(onnx, folder / filename, _split(experiment, "train")[0], windows,
                                                    labels, per_channel=payload.per_channel,
                                                    max_calibration_windows=payload.calibration_windows, **common)
            else:
                result = quant.convert_fp16(onnx, folder / filename, windows, labels, **common)
            data = result.to_dict()
            metrics = {**{k: v for k, v in data.items() if k not in ("path", "details")}, **data["details"]}
            variants.append(_variant(name, kind, data["path"], metrics))
            brief[name] = {k: data[k] for k in ("size_bytes", "accuracy_change", "argmax_agreement")}
        return variants, brief, {}

    return _run_stage("quantize", payload, job, piped, work)


def _table(result: dict[str, Any]) -> dict[str, Any]:
    """The benchmark without its file paths, plus ``recommended``: the fastest variant (p50 at the first batch
    size) among those that agree with the reference on at least 99 % of the test windows."""
    agreeing = [v for v in result["variants"] if v["argmax_agreement"] >= 0.99] or result["variants"][:1]
    best = min(agreeing, key=lambda v: v["latency"][0]["p50_ms"])
    return {**{k: v for k, v in result.items() if not k.endswith("_path")}, "recommended": best["name"]}


@job_actor(schema=BenchmarkModels)
def benchmark_models(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Benchmark every variant on the test split (JSON + PNG), mark the deployment ready, send ``deployment.ready``."""
    from actors.notifications import send_event
    from pipeline.deploy.benchmark import benchmark_variants

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        windows, labels = _split(experiment, "test", payload.max_windows)
        result = benchmark_variants([(v["name"], v["kind"], v["path"]) for v in deployment["variants"]], windows, labels,
                                    folder, batch_sizes=payload.batch_sizes, warmup=payload.warmup, runs=payload.runs,
                                    threads=payload.threads, on_progress=job.progress,
                                    should_stop=job.should_stop).to_dict()
        table = tables[0] = _table(result)
        paths = {"benchmark_json_path": result["json_path"], "benchmark_png_path": result["chart_path"]}
        return [], {"recommended": table["recommended"], **paths}, {"benchmark": table, **paths}

    tables: dict[int, dict[str, Any]] = {}
    summary = _run_stage("benchmark", payload, job, piped, work)
    if tables:  # benchmarked now, not recorded before: tell people, with the recommended variant's figures
        best = next(v for v in tables[0]["variants"] if v["name"] == tables[0]["recommended"])
        event = {"job_id": job.message_id, "deployment_id": summary["deployment_id"],  # type: ignore[index]
                 "model_id": summary["experiment_id"], "format": best["name"],  # type: ignore[index]
                 "size_bytes": best["size_bytes"], "latency_ms": best["latency"][0]["p50_ms"]}
        try:
            send_event("deployment.ready", event, event_id=f"deployment.ready:{event['deployment_id']}")
        except (PayloadInvalid, RedisError, dramatiq.errors.DramatiqError) as exc:  # the deployment stays ready
            log.warning("deploy.notify_failed", deployment_id=event["deployment_id"], error=mask_secrets(str(exc)))
    return summary


def _stage_messages(deployment_id: str, options: DeployOptions, launcher: str) -> list[dramatiq.Message]:
    """The four stage messages; their ids derive from the launching job, so a redelivered launcher rebuilds them."""
    actors = zip(store.STAGES, (export_onnx, optimize_model, quantize_model, benchmark_models), strict=True)
    return [actor.message(**({"deployment_id": deployment_id} if stage == "export" else {}),
                          **getattr(options, stage).model_dump(mode="json"))
            .copy(message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pfd:{launcher}:{stage}"))) for stage, actor in actors]


@job_actor(schema=DeployExperiment)
def deploy_experiment(payload: DeployExperiment, job: JobContext) -> dict:
    """Record the deployment and send its pipeline; a ready one for the same config is returned as recorded."""
    database = get_database(get_settings().database_url)
    experiment = _experiment(database, payload.experiment_id)
    config = payload.options.model_dump(mode="json")
    deployment_id, config_hash = store.deployment_id_for(payload.experiment_id, config)
    spec: dict[str, Any] = {"experiment_id": payload.experiment_id, "config": config,
                            "config_hash": config_hash, "original": _original(experiment)}
    claim = store.open_deployment(database, deployment_id, job.message_id, **spec)
    if claim.action == "ready" and not all(Path(v["path"]).is_file() for v in claim.summary["variants"]):
        # Its files were cleaned up since: deploy again rather than point at nothing.
        claim = store.open_deployment(database, deployment_id, job.message_id, redo=True, **spec)
    if claim.action != "launch":
        return {**claim.summary, "launched": False}
    messages = _stage_messages(deployment_id, payload.options, job.message_id)
    record = store.record_launch(database, deployment_id, job.message_id,
                                 {stage: m.message_id for stage, m in zip(store.STAGES, messages, strict=True)})
    try:
        get_job(messages[0].message_id)  # a redelivered launcher whose pipeline already went out sends nothing
    except JobNotFound:
        dramatiq.pipeline(messages).run()
    return {**record, "launched": True}
