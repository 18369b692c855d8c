"""Quality actors (``cpu_processing``): test suites, benchmarks and code checks of this project.

The job's state says whether the run itself worked; the result's ``status`` is the verdict:
a suite with failing tests is a *succeeded* job whose result says ``failed``, and a suite
stopped at its own ``timeout_s`` says ``timed_out`` with what finished before. The result
is a summary of bounded size; the full logs and reports are kept in the artifact store under
``quality/<message_id>/``, whose key and ``report.json`` checksum the summary carries. Paths are confined to ``settings.quality_roots`` on the worker (the
producer's disk may differ); expressions are checked on send too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from actors.platform.artifact_files import artifact_key, publish
from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.record_files import dataset_file, experiment_file, variant_file
from actors.store.datasets import get_dataset
from actors.store.db import Database, get_database
from actors.store.deployments import get_deployment
from actors.store.experiments import get_experiment
from actors.store.outbox import record_events
from config.queues import policy_for
from config.settings import Settings, get_settings
from pipeline.artifacts import file_sha256
from pipeline.errors import InvalidInput
from pipeline.quality.paths import MAX_EXPRESSION_LENGTH, check_expression, confine_path

__all__ = [
    "RESULT_MAX_BYTES",
    "RunBenchmarks",
    "RunQualityChecks",
    "RunTestSuite",
    "run_benchmarks",
    "run_quality_checks",
    "run_test_suite",
]

# A job result lives in Redis and the jobs table: keep it small; the artifact has the rest.
RESULT_MAX_BYTES = 32_000
PROJECT_ROOT = Path(__file__).resolve().parents[1]

QualityPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Expression = Annotated[str, StringConstraints(max_length=MAX_EXPRESSION_LENGTH)]
RecordId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
BenchmarkName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Tool = Literal["ruff_check", "ruff_format", "mypy"]
ALL_TOOLS: tuple[Tool, ...] = ("ruff_check", "ruff_format", "mypy")


def _limit_s(actor_name: str) -> float:
    """The actor's time limit in seconds: no run may ask for longer."""
    return policy_for(actor_name).time_limit_ms / 1000


class RunTestSuite(Payload):
    """Payload of ``run_test_suite``: pytest on a path, optionally with coverage."""

    path: QualityPath
    markers: Expression | None = None
    keyword: Expression | None = None
    coverage: bool = False
    coverage_source: QualityPath | None = None
    coverage_threshold: float = Field(0.0, ge=0.0, le=100.0)
    timeout_s: float = Field(900.0, gt=0, le=_limit_s("run_test_suite"))
    max_failures: int = Field(20, ge=0, le=100)
    slowest: int = Field(10, ge=0, le=50)

    @field_validator("markers", "keyword")
    @classmethod
    def _safe_expression(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Refused on send already: a bad expression never reaches a queue.
        return check_expression(value, what=f"{info.field_name} expression")


class RunBenchmarks(Payload):
    """Payload of ``run_benchmarks``: one target, a saved model, an HTTP endpoint or the bench suite.

    A model (``experiment_id``, or ``deployment_id`` with ``variant``) is timed on ``num_samples``
    test windows of its dataset per batch size and thread count; an ``api_url`` gets at most
    ``max_requests`` POSTs within ``max_duration_s``; ``names`` runs ``python -m bench``.
    """

    names: list[BenchmarkName] | None = Field(None, min_length=1, max_length=10)
    quick: bool = False
    experiment_id: RecordId | None = None
    deployment_id: RecordId | None = None
    variant: RecordId | None = None
    api_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")] | None = None
    request_body: dict[str, Any] | None = None
    num_samples: int = Field(100, ge=1, le=10_000)
    batch_sizes: list[Annotated[int, Field(ge=1, le=256)]] = Field(default_factory=lambda: [1, 8], min_length=1,
                                                                    max_length=6)
    threads: list[Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=lambda: [1], min_length=1,
                                                               max_length=4)
    warmup: int = Field(3, ge=0, le=100)
    max_requests: int = Field(100, ge=1, le=10_000)
    max_duration_s: float = Field(60.0, gt=0, le=600)
    concurrency: int = Field(1, ge=1, le=32)
    request_timeout_s: float = Field(10.0, gt=0, le=120)
    timeout_s: float = Field(1_800.0, gt=0, le=_limit_s("run_benchmarks"))

    @model_validator(mode="after")
    def _one_target(self) -> RunBenchmarks:
        targets = [name for name in ("names", "experiment_id", "deployment_id", "api_url") if getattr(self, name)]
        if len(targets) != 1:
            raise ValueError("give exactly one of names (the bench suite), experiment_id, deployment_id or "
                             f"api_url; got {targets or 'none'}")
        if self.variant and not self.deployment_id:
            raise ValueError("variant goes with deployment_id")
        return self


class RunQualityChecks(Payload):
    """Payload of ``run_quality_checks``: ruff lint, ruff format check and mypy on a path."""

    path: QualityPath
    tools: list[Tool] = Field(default_factory=lambda: list(ALL_TOOLS), min_length=1, max_length=3)
    timeout_s: float = Field(600.0, gt=0, le=_limit_s("run_quality_checks"))
    max_findings: int = Field(50, ge=0, le=200)


def _artifact_dir(settings: Settings, job: JobContext) -> Path:
    return settings.artifact_root / "quality" / job.message_id


def _fit(make: Callable[[int], dict[str, Any]], items: int) -> dict[str, Any]:
    """The summary ``make(n)`` with the largest ``n <= items`` whose JSON fits the result cap."""
    while True:
        summary = make(items)
        if items == 0 or len(json.dumps(summary, default=str)) <= RESULT_MAX_BYTES:
            return summary
        items //= 2


def _with_artifacts(summary: dict[str, Any], folder: Path, job: JobContext, kind: str, target: str) -> dict[str, Any]:
    """Add the artifact folder and report checksum, and announce the run as ``quality.completed``.

    A run has no record but its job: the outbox row is its announcement's, committed before the
    job can end, so a Redis error after it only delays the event (the sweep relays it).
    """
    from actors.notifications import outbox_event, relay_now

    report = folder / "report.json"
    counts = summary.get("counts") or {}
    issues = counts.get("failed", 0) + counts.get("errors", 0) + sum(
        tool.get("count", 0) for tool in (summary.get("tools") or {}).values() if isinstance(tool, dict))
    passed = bool(summary.get("ok")) if "ok" in summary else summary.get("status") in ("clean", "finished", "passed")
    event = outbox_event("quality.completed", {"job_id": job.message_id, "run_id": job.message_id, "run_type": kind,
                                               "target": target[:200], "passed": passed, "n_issues": issues},
                         event_id=f"quality.completed:{job.message_id}")
    record_events(get_database(get_settings().database_url), [event])
    relay_now([event["event_id"]])
    # Every file of the run is stored (but hidden scratch such as coverage's raw .coverage
    # data); the summary names the folder's key ("quality/<job id>").
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        if path.is_file() and not path.name.startswith("."):
            publish(path)
    return {**summary, "artifacts": artifact_key(folder),
            "report_sha256": file_sha256(report) if report.is_file() else None}


@job_actor(schema=RunTestSuite)
def run_test_suite(payload: RunTestSuite, job: JobContext) -> dict[str, Any]:
    """Run pytest on a confined path; return counts, failures, slowest tests and coverage."""
    from pipeline.quality.pytest_suite import run_pytest_suite

    settings = get_settings()
    path = confine_path(payload.path, settings.quality_roots)
    source = confine_path(payload.coverage_source, settings.quality_roots) if payload.coverage_source else None
    folder = _artifact_dir(settings, job)
    report = run_pytest_suite(
        path, markers=payload.markers, keyword=payload.keyword, coverage=payload.coverage,
        coverage_source=source, coverage_threshold=payload.coverage_threshold, timeout_s=payload.timeout_s,
        on_progress=job.progress, should_stop=job.should_stop, artifact_dir=folder,
    )
    summary = _fit(lambda n: report.summary(max_failures=min(n, payload.max_failures),
                                            max_slowest=min(n, payload.slowest), max_files=n), 100)
    return _with_artifacts(summary, folder, job, "test_suite", str(path))


@job_actor(schema=RunBenchmarks)
def run_benchmarks(payload: RunBenchmarks, job: JobContext) -> dict[str, Any]:
    """Measure a saved model's latency and throughput, an HTTP endpoint's, or run the bench suite."""
    settings = get_settings()
    folder = _artifact_dir(settings, job)
    if payload.names:
        return _bench_suite(payload, job, folder)
    if payload.api_url:
        from pipeline.quality.latency import measure_endpoint

        target = payload.api_url
        figures = measure_endpoint(
            _allowed_url(payload.api_url, settings.benchmark_api_hosts), payload.request_body or _window_body(),
            max_requests=payload.max_requests, max_duration_s=payload.max_duration_s,
            concurrency=payload.concurrency, request_timeout_s=payload.request_timeout_s,
            on_progress=job.progress, should_stop=job.should_stop)
    else:
        from pipeline.datasets.hdf5 import read_windows
        from pipeline.quality.latency import measure_model

        model = _benchmark_target(get_database(settings.database_url), payload)
        target = f"{model['target']} ({model['variant']})"
        figures = {**model, "windows_from": "test split", **measure_model(
            model["kind"], model["path"], read_windows(model["dataset_path"], "test")[0],
            batch_sizes=payload.batch_sizes, threads=payload.threads, num_samples=payload.num_samples,
            warmup=payload.warmup, on_progress=job.progress, should_stop=job.should_stop)}
        figures.pop("dataset_path")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(figures, indent=2, default=str))
    # An endpoint passes when every request it got was answered 2xx; a model when it was timed.
    ok = not payload.api_url or figures["succeeded"] == figures["requests"] > 0
    return _with_artifacts({"status": "finished", "ok": ok, **figures}, folder, job, "benchmarks", target)


def _bench_suite(payload: RunBenchmarks, job: JobContext, folder: Path) -> dict[str, Any]:
    """Run ``python -m bench`` (only from a source checkout: ``bench/`` is not in the package)."""
    from pipeline.quality.benchmarks import run_benchmarks as run

    if not (PROJECT_ROOT / "bench" / "__main__.py").is_file():
        raise InvalidInput(
            f"the project's benchmark suite (bench/) is not installed with the package, and {PROJECT_ROOT} is not "
            "a source checkout: run_benchmarks(names=...) needs a worker started from one; a model "
            "(experiment_id, deployment_id) or an endpoint (api_url) can be measured anywhere")
    names = payload.names or []
    report = run(PROJECT_ROOT, names, quick=payload.quick, timeout_s=payload.timeout_s,
                 on_progress=job.progress, should_stop=job.should_stop, artifact_dir=folder)
    summary = _fit(lambda n: report.summary(max_output_chars=10 * n), 100)
    return _with_artifacts(summary, folder, job, "benchmarks", " ".join(names))


def _benchmark_target(database: Database, payload: RunBenchmarks) -> dict[str, Any]:
    """The model file a benchmark times: an experiment's checkpoint, or a deployment's variant
    (``variant``, else the recommended one), with its dataset's file for the test windows.

    Raises ``InvalidInput`` (no checkpoint, not a deep model, no such variant) or ``RecordNotFound``.
    """
    from pipeline.models import is_deep

    if payload.deployment_id:
        deployment = get_deployment(database, payload.deployment_id)
        name = payload.variant or (deployment.get("benchmark") or {}).get("recommended") or "torch_fp32"
        variant = next((v for v in deployment["variants"] if v["name"] == name), None)
        if variant is None:
            raise InvalidInput(f"deployment {payload.deployment_id!r} has no variant {name!r}; it has "
                               f"{[v['name'] for v in deployment['variants']]}")
        experiment = get_experiment(database, deployment["experiment_id"])
        kind, target = variant["kind"], f"deployment {payload.deployment_id}"
        try:
            path = variant_file(variant)
        except (ArtifactMissing, ArtifactCorrupt):
            path = ""
    else:
        experiment = get_experiment(database, payload.experiment_id or "")
        name, kind, path = "torch_fp32", "torch", experiment["model_path"]
        target = f"experiment {payload.experiment_id}"
        if not is_deep(experiment["model_key"]):
            raise InvalidInput(f"experiment {payload.experiment_id!r} trained {experiment['model_key']!r}: only deep "
                               "models take windows to time")
    if path and not payload.deployment_id:  # a variant's file is the deployment's, on this host
        path = str(experiment_file(experiment))
    if not path or not Path(path).is_file():
        raise InvalidInput(f"{target} has no model file to time (status {experiment['status']}, file {path or 'none'})")
    return {"target": target, "variant": name, "kind": kind, "path": path, "model_key": experiment["model_key"],
            "dataset_path": str(dataset_file(get_dataset(database, experiment["dataset_id"])))}


def _allowed_url(url: str, hosts: tuple[str, ...]) -> str:
    """``url`` if its host is one the settings allow (``PFD_BENCHMARK_API_HOSTS``), else refuse it."""
    host = urlsplit(url).hostname or ""
    if host not in hosts:
        raise InvalidInput(f"api_url host {host!r} is not one run_benchmarks may call ({', '.join(hosts)}); "
                           "add it to PFD_BENCHMARK_API_HOSTS")
    return url


def _window_body() -> dict[str, Any]:
    """The default request: one 1 s window of a generated normal record, with its sampling rate."""
    from pipeline.domain import FS, WINDOW_LENGTH
    from pipeline.signals.config import GeneratorConfig, NoiseConfig
    from pipeline.signals.generator import generate_record

    record = generate_record(GeneratorConfig(fault_types=("sain",), records_per_class=1, noise=NoiseConfig()), 0)
    return {"signal": record.signal[:WINDOW_LENGTH].astype(float).round(6).tolist(), "sampling_rate": FS}


@job_actor(schema=RunQualityChecks)
def run_quality_checks(payload: RunQualityChecks, job: JobContext) -> dict[str, Any]:
    """Run ruff and mypy on a confined path; return counts by rule and file, first findings."""
    from pipeline.quality.checks import run_quality_checks as run

    settings = get_settings()
    path = confine_path(payload.path, settings.quality_roots)
    # The tools run from the root holding the path, so they read that project's configuration.
    root = max((r.resolve() for r in settings.quality_roots if path.is_relative_to(r.resolve())), key=lambda r: len(r.parts))
    folder = _artifact_dir(settings, job)
    report = run(path, root=root, tools=payload.tools, timeout_s=payload.timeout_s,
                 on_progress=job.progress, should_stop=job.should_stop, artifact_dir=folder)
    summary = _fit(lambda n: report.summary(max_findings=min(n, payload.max_findings), max_groups=n), 200)
    return _with_artifacts(summary, folder, job, "checks", str(path))
