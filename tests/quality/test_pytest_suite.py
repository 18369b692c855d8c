"""pytest runs on the fixture project: counts, messages, coverage, isolation, time limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from actors.quality import RESULT_MAX_BYTES, _fit
from pipeline.errors import InvalidInput, StopRequested
from pipeline.quality.pytest_suite import FailedTest, SuiteReport, run_pytest_suite
from tests.quality.conftest import FIXTURE

SOURCE = FIXTURE / "fixture_pkg"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One run of every test but the hanging one, with coverage, kept as an artifact."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    progress: list[tuple[float, str]] = []
    report = run_pytest_suite(
        FIXTURE, markers="not hang", coverage=True, coverage_source=SOURCE, coverage_threshold=90.0,
        timeout_s=120, artifact_dir=artifacts, on_progress=lambda f, s="", **m: progress.append((f, s)),
    )
    return report, artifacts, progress


def test_suite_counts_come_from_the_junit_report(full_run):
    report, _, _ = full_run
    assert (report.status, report.exit_code, report.ok) == ("failed", 1, False)
    assert (report.collected, report.passed, report.failed, report.errors, report.skipped) == (9, 5, 2, 1, 1)


def test_suite_failures_carry_their_messages_and_locations(full_run):
    report, _, _ = full_run
    failures = {f.test: f for f in report.failures}
    assert set(failures) == {
        "tests/test_calc.py::test_subtract_fails",
        "tests/test_calc.py::test_clamp_fails_with_a_message",
        "tests/test_setup_error.py::test_with_broken_fixture",
    }
    subtract = failures["tests/test_calc.py::test_subtract_fails"]
    source = (FIXTURE / "tests" / "test_calc.py").read_text().splitlines()
    assert (subtract.kind, subtract.file) == ("failure", "tests/test_calc.py")
    assert subtract.line is not None and source[subtract.line - 1] == "def test_subtract_fails():"
    assert subtract.message.startswith("assert 2 == 3")
    assert "clamp must keep 15" in failures["tests/test_calc.py::test_clamp_fails_with_a_message"].message
    broken = failures["tests/test_setup_error.py::test_with_broken_fixture"]
    assert broken.kind == "error" and "fixture could not start" in broken.details


def test_suite_lists_its_slowest_tests_and_reports_progress_to_the_end(full_run):
    report, _, progress = full_run
    assert 1 <= len(report.slowest) <= 9
    assert [s.seconds for s in report.slowest] == sorted((s.seconds for s in report.slowest), reverse=True)
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(status == "9/9 tests finished" for _, status in progress)


def test_coverage_total_equals_what_coverage_json_reports_for_the_same_run(full_run, tmp_path):
    report, artifacts, _ = full_run
    out = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={artifacts / '.coverage'}", "-o", str(out)],
                   check=True, capture_output=True, cwd=tmp_path)
    totals = json.loads(out.read_text())["totals"]
    assert report.coverage is not None
    assert report.coverage.percent == totals["percent_covered"]
    assert report.coverage.statements == totals["num_statements"]
    assert 50 < report.coverage.percent < 100 and not report.coverage.meets_threshold
    calc = next(f for f in report.coverage.files if f.path == "fixture_pkg/calc.py")
    assert calc.missing > 0


def test_full_logs_and_reports_are_kept_as_artifacts(full_run):
    _, artifacts, _ = full_run
    for name in ("output.log", "junit.xml", "coverage.json", "progress.jsonl", "report.json"):
        assert (artifacts / name).is_file(), name
    assert "2 failed, 5 passed, 1 skipped, 1 deselected, 1 error" in (artifacts / "output.log").read_text()
    assert json.loads((artifacts / "report.json").read_text())["failed"] == 2


def test_two_suites_at_the_same_time_keep_their_own_reports():
    barrier = threading.Barrier(2)
    reports: dict[str, SuiteReport] = {}

    def run(name: str, **options: object) -> None:
        barrier.wait()
        reports[name] = run_pytest_suite(FIXTURE, coverage=True, coverage_source=SOURCE, timeout_s=120, **options)  # type: ignore[arg-type]

    threads = [
        threading.Thread(target=run, args=("arithmetic",), kwargs={"keyword": "add or subtract"}),
        threading.Thread(target=run, args=("clamp",), kwargs={"keyword": "clamp and not fails", "markers": "not hang"}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    arithmetic, clamp = reports["arithmetic"], reports["clamp"]
    assert (arithmetic.collected, arithmetic.passed, arithmetic.failed) == (2, 1, 1)
    assert [f.test for f in arithmetic.failures] == ["tests/test_calc.py::test_subtract_fails"]
    assert (clamp.collected, clamp.passed, clamp.failed, clamp.failures) == (3, 3, 0, ())
    assert arithmetic.coverage is not None and clamp.coverage is not None
    assert arithmetic.coverage.percent != clamp.coverage.percent


def _gone(pid_file):
    """Assert that the hanging run's process group and its test's child no longer exist."""
    pgid, child = (int(x) for x in pid_file.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_hanging_test_hits_the_time_limit_and_no_process_of_the_run_remains(tmp_path):
    pid_file = tmp_path / "hang.pid"
    report = run_pytest_suite(FIXTURE, markers="hang", timeout_s=6, extra_env={"HANG_PID_FILE": str(pid_file)})
    assert (report.status, report.exit_code, report.ok) == ("timed_out", None, False)
    assert report.unfinished == ("tests/test_hang.py::test_hangs_forever",)
    assert report.collected == 1
    _gone(pid_file)


def test_cancelling_a_run_kills_its_whole_process_tree(tmp_path):
    pid_file = tmp_path / "hang.pid"
    with pytest.raises(StopRequested):
        run_pytest_suite(FIXTURE, markers="hang", timeout_s=120, should_stop=pid_file.exists,
                         extra_env={"HANG_PID_FILE": str(pid_file)})
    _gone(pid_file)


def test_keyword_that_pytest_cannot_parse_is_refused_with_its_message():
    with pytest.raises(InvalidInput, match="(?s)pytest refused its arguments.*Wrong expression passed to '-k'"):
        run_pytest_suite(FIXTURE, keyword="add and and", timeout_s=60)


def test_expression_with_shell_syntax_never_starts_a_process(tmp_path):
    with pytest.raises(InvalidInput, match=r"contains ';'"):
        run_pytest_suite(FIXTURE, markers="hang; touch pwned", work_base=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_summary_of_a_huge_report_fits_the_result_cap():
    failure = FailedTest(test="t" * 1000, kind="failure", message="m" * 10_000, details="d" * 20_000)
    report = SuiteReport(
        status="failed", exit_code=1, collected=5000, passed=0, failed=5000, errors=0, skipped=0,
        duration_s=1.0, failures=(failure,) * 5000, slowest=(), coverage=None, unfinished=(),
        output_tail="x" * 10_000, command=("pytest",),
    )
    summary = _fit(lambda n: report.summary(max_failures=n), 100)
    assert len(json.dumps(summary)) <= RESULT_MAX_BYTES
    assert summary["failures"] and summary["failures_left_out"] == 5000 - len(summary["failures"])
