"""Operating the work from a shell and its logs, against the real workers: listings, the
cancel and dead-letter cases, live workers per queue, the hint for a queue nobody consumes,
and log lines that follow a job (issue "Operate it")."""

from __future__ import annotations

import json
import signal
import uuid

import dramatiq
from typer.testing import CliRunner

from actors.cli import app as cli
from actors.platform.dead_letters import list_dead_letters
from actors.platform.jobs import get_job, job_store, wait_for_job
from tests.probe_actors import PROBES, flaky, launch_squares, stepper
from tests.waiting import wait_until
from tests.workers import Workers

runner = CliRunner()


def _json(*args: str, exit_code: int = 0):  # type: ignore[no-untyped-def]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.output)


def _recorded(message_id: str) -> bool:
    return bool(_json("jobs", "--root", message_id, "--limit", "100"))


def test_jobs_lists_recorded_jobs_newest_first_with_filters_and_pages(workers):
    sent = [stepper.send(steps=1, step_s=0) for _ in range(3)]
    for message in sent:
        wait_for_job(message.message_id, timeout_s=30)
    wait_until(lambda: all(_recorded(m.message_id) for m in sent), what="the job rows")
    listed = _json("jobs", "--actor", "stepper", "--state", "succeeded", "--since", "10m", "--limit", "3")
    assert [job["message_id"] for job in listed] == [m.message_id for m in reversed(sent)]  # newest first
    second_page = _json("jobs", "--actor", "stepper", "--limit", "1", "--page", "2")
    assert second_page[0]["message_id"] == sent[-2].message_id
    assert _json("jobs", "--actor", "stepper", "--state", "failed", "--since", "10m") == []
    # A tree's jobs by its root, and whole ids in the table for people.
    launcher = launch_squares.send(key=f"test:{uuid.uuid4().hex}", members=2)
    wait_for_job(launcher.message_id, timeout_s=60)
    wait_until(lambda: len(_json("jobs", "--root", launcher.message_id)) == 4, what="the tree's rows")
    table = runner.invoke(cli, ["jobs", "--root", launcher.message_id])
    assert launcher.message_id in table.output  # whole, never cut at the terminal's width


def test_cancel_on_an_unknown_or_a_final_job_says_so_and_exits_1(workers):
    unknown = runner.invoke(cli, ["cancel", "no-such-job"])
    assert unknown.exit_code == 1 and "no job with message id 'no-such-job'" in unknown.output
    assert "Traceback" not in unknown.output and len(unknown.output.strip().splitlines()) == 1
    done = stepper.send(steps=1, step_s=0)
    wait_for_job(done.message_id, timeout_s=30)
    final = runner.invoke(cli, ["cancel", done.message_id])
    assert final.exit_code == 1 and "had already ended (succeeded): nothing changed" in final.output
    assert get_job(done.message_id).cancel_requested is False


def test_dead_letters_say_why_from_the_job_record_and_purge_asks_first(workers, redis_client):
    message = flaky.send(key=f"test:{uuid.uuid4().hex}", failures=100)
    assert wait_for_job(message.message_id, timeout_s=60).state == "failed"
    letters = wait_until(lambda: [d for d in _json("dlq", "list", "high_priority") if d["message_id"] == message.message_id],
                         what="the dead letter")
    assert letters[0]["reason"] == "TransientError: transient failure 4 of 100"
    table = runner.invoke(cli, ["dlq", "list", "high_priority"])
    assert message.message_id in table.output  # whole, never cut at the terminal's width
    # A poison message on gpu_training: its purge asks, and a "no" deletes nothing.
    poison = dramatiq.Message(queue_name="gpu_training", actor_name="no_such_actor", args=(), kwargs={}, options={})
    dramatiq.get_broker().enqueue(poison)
    wait_until(lambda: list_dead_letters(redis_client, "gpu_training"), what="the poison dead letter")
    declined = runner.invoke(cli, ["dlq", "purge", "gpu_training"], input="n\n")
    assert declined.exit_code == 1 and "for good?" in declined.output
    assert list_dead_letters(redis_client, "gpu_training")
    purged = runner.invoke(cli, ["dlq", "purge", "gpu_training", "--yes", "--json"])
    assert purged.exit_code == 0 and json.loads(purged.output)["purged"] >= 1
    assert list_dead_letters(redis_client, "gpu_training") == []


def test_queues_show_their_live_workers(workers):
    rows = {row["queue"]: row for row in _json("queues")}
    assert all(rows[queue]["workers"] for queue in ("high_priority", "gpu_training", "cpu_processing", "notifications"))


def test_following_work_on_a_queue_nobody_consumes_says_so(workers):
    workers.signal("gpu_training", signal.SIGSTOP)
    try:
        wait_until(lambda: not job_store().live_workers().get("gpu_training"), timeout=20,
                   what="the stopped worker's heartbeat to expire")
        message = PROBES["gpu_training"].send()
        result = runner.invoke(cli, ["follow", message.message_id, "--timeout", "14"])
        assert result.exit_code == 1
        assert "no live worker consumes queue 'gpu_training'" in result.output
        assert "still queued after 14 s" in result.output
    finally:
        workers.signal("gpu_training", signal.SIGCONT)
    assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"


def _lines_of(workers, process: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in workers.log(process).splitlines() if line.strip()]


def test_a_job_writes_started_progress_and_finished_lines_with_its_tree_and_domain_ids(workers):
    message = stepper.send(steps=3, step_s=0.01, dataset_id="ds-followed")

    def lines():  # type: ignore[no-untyped-def]
        return [r for r in _lines_of(workers, "cpu_processing") if r.get("message_id") == message.message_id]

    wait_for_job(message.message_id, timeout_s=30)
    records = wait_until(lambda: (found := lines()) and found[-1].get("event") == "job.finished" and found,
                         what="the job's lines")
    events = [r["event"] for r in records]
    assert events[0] == "job.started" and "job.progress" in events and events[-1] == "job.finished"
    # At most one progress line for three quick steps: a bounded rate, not a line per step.
    assert events.count("job.progress") == 1
    for record in records:
        assert record["root_id"] == message.message_id and record["dataset_id"] == "ds-followed"
    assert records[0]["attempt"] == 1 and records[-1]["outcome"] == "succeeded"


def test_bad_input_is_one_warning_without_a_traceback(workers):
    bad = dramatiq.Message(queue_name="high_priority", actor_name="strict", args=(),
                           kwargs={"key": "x", "failures": "many"}, options={})
    dramatiq.get_broker().enqueue(bad)
    assert wait_for_job(bad.message_id, timeout_s=30).error_type == "PayloadInvalid"
    records = wait_until(lambda: [r for r in _lines_of(workers, "high_priority") if r.get("message_id") == bad.message_id
                                  and r.get("event") == "job.finished"] and
                         [r for r in _lines_of(workers, "high_priority") if r.get("message_id") == bad.message_id],
                         what="the bad job's lines")
    assert [r["level"] for r in records if r["level"] in ("warning", "error", "critical")] == ["warning"]
    assert not any("exception" in r or "Traceback" in json.dumps(r) for r in records)


def test_every_procfile_process_writes_only_json_lines(workers, tmp_path):
    for process in ("high_priority", "gpu_training", "cpu_processing", "notifications", "recorder"):
        for line in workers.log(process).splitlines():
            if line.strip():
                assert isinstance(json.loads(line), dict), (process, line)
    # The scheduler too: periodiq's start and its table of periodic actors.
    own = Workers(tmp_path)
    try:
        own.start("scheduler")
        wait_until(lambda: "notify_dead_letters" in own.log("scheduler") or "reap_stale_jobs" in own.log("scheduler"),
                   timeout=60, what="the scheduler's table of periodic actors")
    finally:
        own.stop_all()
    lines = [line for line in own.log("scheduler").splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def test_logs_follows_one_tree_across_processes(workers, tmp_path):
    launcher = launch_squares.send(key=f"test:{uuid.uuid4().hex}", members=2)
    wait_for_job(launcher.message_id, timeout_s=60)
    # As a Procfile runner shows them: every process's lines, prefixed, in one stream.
    combined = tmp_path / "procfile.log"
    combined.write_text("".join(f"12:00:00 {name}.1 | {line}\n" for name in ("high_priority", "cpu_processing")
                                for line in workers.log(name).splitlines()))
    result = runner.invoke(cli, ["logs", launcher.message_id, str(combined), "--json"])
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.splitlines()]
    actors = {r.get("actor") for r in records}
    assert {"launch_squares", "square", "collect"} <= actors
    assert all(launcher.message_id in (r.get("root_id"), r.get("message_id")) for r in records)
