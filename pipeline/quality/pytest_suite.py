"""Run pytest on a path; read results from JUnit XML and coverage JSON, never from stdout.

Every run gets its own folder: the JUnit file, pytest-cov's JSON and data file
(``COVERAGE_FILE``), pytest's temporary files (``TMPDIR``) and a progress file, so two
runs at the same time cannot overwrite each other's reports. A tiny plugin written into
that folder (loaded with ``-p``) appends one JSON line per collected, started and finished
test; the runner tails it for progress and, when a run is killed before pytest writes its
JUnit file, for the counts so far and the test that never finished.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, never_stop, no_progress
from pipeline.quality.paths import check_expression
from pipeline.quality.runner import (
    LineTail,
    cap_text,
    clean_env,
    keep_files,
    run_command,
    run_dir,
    write_report,
)

__all__ = [
    "KEPT_FILES",
    "CoverageReport",
    "FailedTest",
    "FileCoverage",
    "SlowTest",
    "SuiteReport",
    "read_coverage",
    "read_junit",
    "run_pytest_suite",
]

PLUGIN_MODULE = "pfd_quality_progress"
# Files of a run worth keeping as its artifact (the full log among them).
KEPT_FILES = ("output.log", "junit.xml", "coverage.json", ".coverage", "progress.jsonl")
_MAX_DETAILS_CHARS = 20_000
_MAX_SLOWEST = 50

_PLUGIN_SOURCE = '''"""Written by pipeline.quality: one JSON line per collected, started and finished test."""
import json
from pathlib import Path

_PATH = Path(__file__).with_name("progress.jsonl")


def _emit(**event):
    # One short write per line in append mode: a reader never sees half a line as whole.
    with open(_PATH, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\\n")


def pytest_collection_finish(session):
    _emit(event="collected", count=len(session.items))


def pytest_runtest_logstart(nodeid, location):
    _emit(event="start", test=nodeid)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _emit(event="report", test=report.nodeid, when=report.when, outcome=report.outcome)


def pytest_runtest_logfinish(nodeid, location):
    _emit(event="finish", test=nodeid)
'''


@dataclass(frozen=True)
class FailedTest:
    """A test that failed (``failure``) or errored in setup, teardown or collection (``error``)."""

    test: str
    kind: str
    message: str
    details: str
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class SlowTest:
    """A test and its duration in seconds (setup, call and teardown)."""

    test: str
    seconds: float


@dataclass(frozen=True)
class FileCoverage:
    """Line coverage of one measured file."""

    path: str
    percent: float
    statements: int
    missing: int


@dataclass(frozen=True)
class CoverageReport:
    """Line coverage as pytest-cov's JSON report gives it, against a threshold in percent."""

    percent: float
    threshold: float
    covered_lines: int
    statements: int
    files: tuple[FileCoverage, ...]

    @property
    def meets_threshold(self) -> bool:
        """True when the total is at least the threshold."""
        return self.percent >= self.threshold


@dataclass(frozen=True)
class SuiteReport:
    """What one pytest run found. ``status``: passed, failed, no_tests, timed_out or error."""

    status: str
    exit_code: int | None
    collected: int
    passed: int
    failed: int
    errors: int
    skipped: int
    duration_s: float
    failures: tuple[FailedTest, ...]
    slowest: tuple[SlowTest, ...]
    coverage: CoverageReport | None
    unfinished: tuple[str, ...]
    output_tail: str
    command: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every test passed and coverage (if measured) meets its threshold."""
        return self.status == "passed" and (self.coverage is None or self.coverage.meets_threshold)

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (the artifact's ``report.json``)."""
        data = asdict(self)
        data["ok"] = self.ok
        if self.coverage is not None:
            data["coverage"]["meets_threshold"] = self.coverage.meets_threshold
        return data

    def summary(
        self, *, max_failures: int = 20, max_slowest: int = 10, max_files: int = 20,
        max_message_chars: int = 500, max_output_chars: int = 2_000,
    ) -> dict[str, Any]:
        """A compact, size-bounded view for a job result; the full one is ``to_dict()``."""
        summary: dict[str, Any] = {
            "status": self.status, "ok": self.ok, "exit_code": self.exit_code,
            "counts": {"collected": self.collected, "passed": self.passed, "failed": self.failed,
                       "errors": self.errors, "skipped": self.skipped},
            "duration_s": round(self.duration_s, 3),
            "failures": [
                {"test": cap_text(f.test, 300), "kind": f.kind, "message": cap_text(f.message, max_message_chars),
                 "file": f.file, "line": f.line}
                for f in self.failures[:max_failures]
            ],
            "failures_left_out": max(len(self.failures) - max_failures, 0),
            "slowest": [{"test": cap_text(s.test, 300), "seconds": round(s.seconds, 3)} for s in self.slowest[:max_slowest]],
            "unfinished": [cap_text(t, 300) for t in self.unfinished[:max_failures]],
            "output_tail": self.output_tail[-max_output_chars:],
        }
        if self.coverage is not None:
            least_covered = sorted(self.coverage.files, key=lambda f: (f.percent, f.path))
            summary["coverage"] = {
                "percent": round(self.coverage.percent, 2), "threshold": self.coverage.threshold,
                "meets_threshold": self.coverage.meets_threshold, "statements": self.coverage.statements,
                "covered_lines": self.coverage.covered_lines,
                "least_covered": [
                    {"path": cap_text(f.path, 300), "percent": round(f.percent, 2), "missing": f.missing}
                    for f in least_covered[:max_files]
                ],
                "files_left_out": max(len(least_covered) - max_files, 0),
            }
        return summary


def run_pytest_suite(
    path: Path,
    *,
    markers: str | None = None,
    keyword: str | None = None,
    coverage: bool = False,
    coverage_source: Path | None = None,
    coverage_threshold: float = 0.0,
    timeout_s: float = 600.0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    python: str = sys.executable,
    artifact_dir: Path | None = None,
    work_base: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> SuiteReport:
    """Run pytest on ``path`` (already confined by the caller) and report what it found.

    ``markers`` and ``keyword`` are ``-m`` and ``-k`` expressions. With ``coverage``,
    ``coverage_source`` (default ``path``) is measured. A run past ``timeout_s`` is killed
    (its whole process tree) and reported ``timed_out`` with what finished before. With
    ``artifact_dir``, the full log, JUnit, coverage files and ``report.json`` are kept there.
    The run sees a minimal environment plus ``extra_env`` (never the worker's settings).

    Raises:
        InvalidInput: an unsafe expression, or pytest refused its arguments (exit code 4).
        StopRequested: ``should_stop()`` answered true; the process tree was killed.
    """
    markers = check_expression(markers, what="marker expression")
    keyword = check_expression(keyword, what="keyword expression")
    if timeout_s <= 0:
        raise InvalidInput("timeout_s must be positive")
    with run_dir(work_base) as work:
        (work / f"{PLUGIN_MODULE}.py").write_text(_PLUGIN_SOURCE, encoding="utf-8")
        argv = [
            python, "-m", "pytest", str(path), "-p", PLUGIN_MODULE, "-p", "no:cacheprovider",
            f"--junitxml={work / 'junit.xml'}", "-o", "junit_family=xunit1", "--color=no", "-q",
        ]
        if markers:
            argv += ["-m", markers]
        if keyword:
            argv += ["-k", keyword]
        if coverage:
            argv += [f"--cov={coverage_source or path}", f"--cov-report=json:{work / 'coverage.json'}"]
        env = clean_env(python=python, tmp_dir=work / "tmp", extra={
            **(extra_env or {}), "PYTHONPATH": str(work), "COVERAGE_FILE": str(work / ".coverage"),
        })
        tracker = _ProgressTracker(LineTail(work / "progress.jsonl"), on_progress)
        on_progress(0.0, "starting pytest")
        result = run_command(
            argv, cwd=work, env=env, stdout_path=work / "output.log", timeout_s=timeout_s,
            should_stop=should_stop, on_poll=tracker.poll,
        )
        output_tail = result.output(4_000)
        if result.returncode == 4:
            raise InvalidInput(f"pytest refused its arguments: {output_tail[-1_000:].strip()}")
        base = path if path.is_dir() else path.parent
        junit = work / "junit.xml"
        if junit.is_file() and not result.timed_out:
            cases = read_junit(junit)
        else:
            cases = tracker.cases()
        failures = tuple(f for _, _, f in cases if f is not None)
        outcomes = [outcome for _, outcome, _ in cases]
        slowest = tuple(sorted((SlowTest(test, seconds) for (test, seconds), _, _ in cases),
                               key=lambda s: -s.seconds)[:_MAX_SLOWEST])
        coverage_json = work / "coverage.json"
        report = SuiteReport(
            status=_status(result.returncode, result.timed_out),
            exit_code=result.returncode,
            collected=tracker.collected if tracker.collected is not None else len(cases),
            passed=outcomes.count("passed"), failed=outcomes.count("failed"),
            errors=outcomes.count("error"), skipped=outcomes.count("skipped"),
            duration_s=result.duration_s, failures=failures, slowest=slowest,
            coverage=read_coverage(coverage_json, coverage_threshold, base) if coverage and coverage_json.is_file() else None,
            unfinished=tracker.unfinished(), output_tail=output_tail, command=tuple(argv),
        )
        keep_files(work, KEPT_FILES, artifact_dir)
        if artifact_dir is not None:
            write_report(artifact_dir, report.to_dict())
    on_progress(1.0, f"{report.status}: {report.passed} passed, {report.failed} failed, {report.skipped} skipped",
                passed=report.passed, failed=report.failed, errors=report.errors, skipped=report.skipped)
    return report


def _status(returncode: int | None, timed_out: bool) -> str:
    if timed_out:
        return "timed_out"
    return {0: "passed", 1: "failed", 5: "no_tests"}.get(returncode or 0, "error")


# One test as read back: (test id, seconds), outcome, failure (None when it did not fail).
_Case = tuple[tuple[str, float], str, FailedTest | None]


def read_junit(path: Path) -> list[_Case]:
    """Read pytest's JUnit XML (xunit1 flavour, which has file and line) into test cases."""
    root = ET.parse(path).getroot()
    cases: list[_Case] = []
    for case in root.iter("testcase"):
        test = _test_id(case)
        seconds = float(case.get("time") or 0.0)
        outcome, failure = "passed", None
        for kind, tag in (("failure", "failure"), ("error", "error")):
            element = case.find(tag)
            if element is not None:
                outcome = "failed" if kind == "failure" else "error"
                line = case.get("line")
                failure = FailedTest(
                    test=test, kind=kind, message=element.get("message") or "",
                    details=cap_text(element.text or "", _MAX_DETAILS_CHARS),
                    file=case.get("file"), line=int(line) + 1 if line and line.isdigit() else None,
                )
                break
        if failure is None and case.find("skipped") is not None:
            outcome = "skipped"
        cases.append(((test, seconds), outcome, failure))
    return cases


def _test_id(case: ET.Element) -> str:
    """Rebuild pytest's node id (``file::Class::name``) from a JUnit test case."""
    name, classname, file = case.get("name", ""), case.get("classname", ""), case.get("file")
    if not file:
        return f"{classname}::{name}" if classname else name
    module = file.removesuffix(".py").replace("/", ".")
    rest = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
    return "::".join(part for part in (file, *rest.split("."), name) if part)


def read_coverage(path: Path, threshold: float, base: Path) -> CoverageReport:
    """Read pytest-cov's JSON report; file paths are shown relative to ``base`` where they can be."""
    data = json.loads(path.read_text(encoding="utf-8"))
    totals = data["totals"]
    files = []
    for name, entry in data.get("files", {}).items():
        summary = entry["summary"]
        files.append(FileCoverage(
            path=_relative(name, base), percent=float(summary["percent_covered"]),
            statements=int(summary["num_statements"]), missing=int(summary["missing_lines"]),
        ))
    return CoverageReport(
        percent=float(totals["percent_covered"]), threshold=threshold,
        covered_lines=int(totals["covered_lines"]), statements=int(totals["num_statements"]),
        files=tuple(sorted(files, key=lambda f: f.path)),
    )


def _relative(name: str, base: Path) -> str:
    try:
        return str(Path(name).relative_to(base))
    except ValueError:
        return name


class _ProgressTracker:
    """Follows the plugin's progress file: reports progress, remembers outcomes."""

    def __init__(self, tail: LineTail, on_progress: ProgressFn) -> None:
        self.tail = tail
        self.on_progress = on_progress
        self.collected: int | None = None
        self.started: list[str] = []
        self.finished: set[str] = set()
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}

    def poll(self) -> None:
        """Read new progress lines; report once if anything changed."""
        changed = False
        for line in self.tail.read():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            changed = True
            kind, test = event.get("event"), event.get("test", "")
            if kind == "collected":
                self.collected = int(event.get("count", 0))
            elif kind == "start":
                self.started.append(test)
            elif kind == "finish":
                self.finished.add(test)
            elif kind == "report":
                self._record(test, event.get("when"), event.get("outcome"))
        if changed:
            failed = sum(1 for o in self.outcomes.values() if o in ("failed", "error"))
            total = self.collected or 0
            fraction = 0.05 + 0.9 * len(self.finished) / total if total else 0.02
            self.on_progress(min(fraction, 0.95), f"{len(self.finished)}/{total} tests finished",
                             collected=total, finished=len(self.finished), failed=failed)

    def _record(self, test: str, when: str | None, outcome: str | None) -> None:
        if when == "call":
            self.outcomes[test] = outcome or "failed"
        elif outcome == "skipped":
            self.outcomes[test] = "skipped"
        elif outcome == "failed" and self.outcomes.get(test) != "failed":
            self.outcomes[test] = "error"

    def cases(self) -> list[_Case]:
        """Outcomes of the tests that finished (when no JUnit file was written)."""
        cases: list[_Case] = []
        for test in self.started:
            if test not in self.finished:
                continue
            outcome = self.outcomes.get(test, "passed")
            failure = None
            if outcome in ("failed", "error"):
                kind = "failure" if outcome == "failed" else "error"
                failure = FailedTest(test=test, kind=kind, message="(details are in the log: the run was killed before its JUnit report)", details="")
            cases.append(((test, 0.0), outcome, failure))
        return cases

    def unfinished(self) -> tuple[str, ...]:
        """Tests that started and never finished (the one a killed run was stuck in)."""
        return tuple(test for test in self.started if test not in self.finished)
