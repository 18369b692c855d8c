"""The pfd CLI against real workers: status, cancel, queues, and dead-letter retry."""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from actors.cli import app as cli
from actors.platform.jobs import get_job, wait_for_job
from tests.probe_actors import flaky, stepper
from tests.waiting import wait_until

runner = CliRunner()


def _json(*args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_status_shows_the_job_record(workers):
    message = stepper.send(steps=1, step_s=0)
    wait_for_job(message.message_id, timeout_s=30)
    status = _json("status", message.message_id)["job"]
    assert (status["state"], status["actor"], status["queue"]) == ("succeeded", "stepper", "cpu_processing")
    assert (status["attempts"], status["deliveries"]) == (1, 1)
    assert runner.invoke(cli, ["status", "no-such-id"]).exit_code == 1


def test_cancel_stops_a_running_job(workers):
    message = stepper.send(steps=100, step_s=0.05)
    wait_until(lambda: get_job(message.message_id).progress > 0, what="the job to start")
    assert _json("cancel", message.message_id)["cancel_requested"] is True
    assert wait_for_job(message.message_id, timeout_s=30).state == "cancelled"


def test_queues_lists_every_queue_with_its_depths(workers):
    depths = {row["queue"]: row for row in _json("queues")}
    assert set(depths) == {"high_priority", "gpu_training", "cpu_processing", "notifications"}
    assert all({"queued", "delayed", "dead"} <= row.keys() for row in depths.values())


def test_dlq_retry_requeues_a_dead_letter_which_then_succeeds(workers, redis_client):
    key = f"test:{uuid.uuid4().hex}"
    message = flaky.send(key=key, failures=4)  # 1 try + 3 retries all fail: dead-lettered
    assert wait_for_job(message.message_id, timeout_s=60).state == "failed"
    wait_until(lambda: message.message_id in {d["message_id"] for d in _json("dlq", "list", "high_priority")},
               what="the dead letter")
    retried = _json("dlq", "retry", "high_priority", message.message_id)
    assert retried["requeued"] == [message.message_id]
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded" and job.result == {"attempts": 5}
    assert message.message_id not in {d["message_id"] for d in _json("dlq", "list", "high_priority")}


def test_maintenance_run_executes_a_periodic_actor_by_hand(workers):
    result = runner.invoke(cli, ["maintenance", "run", "reap_stale_jobs", "--json", '{"dry_run": true}'])
    assert result.exit_code == 0, result.output
    assert '"dry_run": true' in result.output
    assert runner.invoke(cli, ["maintenance", "run", "generate_dataset"]).exit_code == 2
