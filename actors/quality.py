"""Quality actors (``cpu_processing``): test suites, benchmarks and code checks of this project.

The job's state says whether the run itself worked; the result's ``status`` is the verdict:
a suite with failing tests is a *succeeded* job whose result says ``failed``, and a suite
stopped at its own ``timeout_s`` says ``timed_out`` with what finished before. The result
is a summary of bounded size; the full logs and reports are kept in the artifact folder
``<artifact_root>/quality/<message_id>/``, whose path and ``report.json`` checksum the
summary carries. Paths are confined to ``settings.quality_roots`` on the worker (the
producer's disk may differ); expressions are checked on send too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from actors.store.db import get_database
from actors.store.outbox import record_events
from config.queues import policy_for
from config.settings import Settings, get_settings
from pipeline.artifacts import file_sha256
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
    """Payload of ``run_benchmarks``: which of ``python -m bench``'s benchmarks to run."""

    names: list[BenchmarkName] = Field(min_length=1, max_length=10)
    quick: bool = False
    timeout_s: float = Field(1_800.0, gt=0, le=_limit_s("run_benchmarks"))


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
    return {**summary, "artifacts": str(folder), "report_sha256": file_sha256(report) if report.is_file() else None}


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
    """Run the chosen benchmarks of this project's ``bench`` package; return their figures."""
    from pipeline.quality.benchmarks import run_benchmarks as run

    settings = get_settings()
    folder = _artifact_dir(settings, job)
    report = run(PROJECT_ROOT, payload.names, quick=payload.quick, timeout_s=payload.timeout_s,
                 on_progress=job.progress, should_stop=job.should_stop, artifact_dir=folder)
    summary = _fit(lambda n: report.summary(max_output_chars=10 * n), 100)
    return _with_artifacts(summary, folder, job, "benchmarks", " ".join(payload.names))


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
