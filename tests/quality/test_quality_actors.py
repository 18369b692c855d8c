"""The quality actors through a real cpu_processing worker: results, artifacts, bad input."""

from __future__ import annotations

import json

import pytest

from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import wait_for_job
from actors.quality import run_quality_checks, run_test_suite
from pipeline.artifacts import file_sha256
from tests.records import written
from tests.waiting import wait_until


def test_test_suite_runs_on_a_worker_and_keeps_its_logs_as_an_artifact(workers):
    message = run_test_suite.send(
        path="tests/quality/fixture_project", markers="not hang", coverage=True,
        coverage_source="tests/quality/fixture_project/fixture_pkg", coverage_threshold=50,
    )
    job = wait_for_job(message.message_id, timeout_s=120)
    assert job.state == "succeeded", job.error_message
    result = job.result
    assert result["status"] == "failed" and result["ok"] is False
    assert result["counts"] == {"collected": 9, "passed": 5, "failed": 2, "errors": 1, "skipped": 1}
    assert {f["test"] for f in result["failures"]} >= {"tests/test_calc.py::test_subtract_fails"}
    assert result["coverage"]["meets_threshold"] is True
    assert result["artifacts"] == f"quality/{message.message_id}"  # a store key, not this host's path
    folder = written(result["artifacts"])
    assert file_sha256(folder / "report.json") == result["report_sha256"]
    assert json.loads((folder / "report.json").read_text())["passed"] == 5
    assert len(json.dumps(result)) < 32_000
    assert job.progress == 1.0
    announced = wait_until(lambda: _inbox(f"quality.completed:{message.message_id}"), what="quality.completed")
    assert announced[0].payload["passed"] is False and announced[0].payload["n_issues"] == 3


def _inbox(event_id: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from actors.store.db import get_database
    from actors.store.notifications import InboxItem
    from config.settings import get_settings

    with get_database(get_settings().database_url).session() as session:
        return list(session.scalars(select(InboxItem).where(InboxItem.event_id == event_id)))


def test_path_outside_the_quality_roots_fails_at_once_on_the_worker(workers):
    message = run_quality_checks.send(path="/etc")
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "UnsafePath")
    assert "outside the quality roots" in job.error_message


def test_dotdot_escape_fails_at_once_on_the_worker(workers):
    message = run_test_suite.send(path="tests/../../etc")
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.error_type) == ("failed", "UnsafePath")
    assert "through '..'" in job.error_message


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"markers": "not hang; rm -rf /"}, r"markers: markers expression .* contains ';'"),
        ({"keyword": "$(reboot)"}, r"keyword: keyword expression .* contains '\$'"),
        ({"timeout_s": 10**6}, "timeout_s: Input should be less than or equal to 3600"),
    ],
)
def test_bad_test_suite_payload_is_refused_on_send(app, payload, match):
    with pytest.raises(PayloadInvalid, match=match):
        run_test_suite.send(path="tests", **payload)
