"""Job records through real workers: retries, validation, time limits, cancel, dead letters."""

from __future__ import annotations

import json
import uuid

import dramatiq
import pytest

from actors.platform.dead_letters import list_dead_letters
from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import get_job, request_cancel, wait_for_job
from tests.probe_actors import flaky, spinner, stepper
from tests.waiting import wait_until


def _key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_transient_failure_is_retried_with_growing_delays_then_succeeds(workers, redis_client):
    key = _key()
    message = flaky.send(key=key, failures=2)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded"
    assert job.attempts == 3
    stamps = [float(t) for t in redis_client.lrange(f"{key}:attempts", 0, -1)]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(gaps) == 2
    # Backoff is min_backoff * 2^n * U(1, 2): 0.2-0.4 s, then 0.4-0.8 s, plus up to a few
    # hundred ms of delay-queue polling on a busy machine. The floors are exact and show the
    # delay doubling; comparing the two gaps directly only measures the polling noise.
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4


def test_bad_payload_is_refused_on_send_with_a_clear_message(app):
    with pytest.raises(PayloadInvalid, match="failures: Input should be greater than or equal to 0"):
        flaky.send(key="x", failures=-1)
    with pytest.raises(PayloadInvalid, match="unknown: Extra inputs are not permitted"):
        flaky.send(key="x", unknown=1)


def test_bad_payload_that_bypasses_send_fails_once_and_is_never_retried(workers, redis_client):
    # A message built by hand (another producer, an old client) skips send-side checks.
    key = _key()
    message = dramatiq.Message(
        queue_name="high_priority", actor_name="strict", args=(), kwargs={"key": key, "failures": "many"},
        options={},
    )
    dramatiq.get_broker().enqueue(message)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "failed"
    assert job.attempts == 1
    assert job.error_type == "PayloadInvalid"
    assert "failures: Input should be a valid integer" in job.error_message
    assert redis_client.get(f"{key}:count") is None  # the body never ran
    wait_until(lambda: _dead_lettered(redis_client, "high_priority", message.message_id), what="dead letter")


def test_exhausted_retries_end_failed_in_the_dead_letter_queue_with_the_reason(workers, redis_client):
    message = flaky.send(key=_key(), failures=100)
    job = wait_for_job(message.message_id, timeout_s=60)
    assert job.state == "failed"
    assert job.attempts == 4  # the first try and three retries
    assert job.error_type == "TransientError"
    assert "transient failure 4 of 100" in job.error_message
    wait_until(lambda: _dead_lettered(redis_client, "high_priority", message.message_id), what="dead letter")


def test_job_past_its_time_limit_ends_timed_out_and_is_not_retried(workers):
    # Busy work that never checks: Dramatiq's hard limit (2 s) interrupts it.
    message = spinner.send(seconds=20)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "timed_out"
    assert job.attempts == 1
    assert job.duration_ms < 10_000


def test_cooperative_work_past_its_deadline_ends_timed_out(workers):
    message = stepper.send(steps=100, step_s=0.1)  # 10 s of work, a 4 s limit
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "timed_out"
    assert job.error_type == "JobTimedOut"
    assert 0.2 < job.progress < 1.0


def test_progress_is_a_fraction_with_status_and_metrics(workers):
    message = stepper.send(steps=4, step_s=0.05)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded"
    assert job.progress == 1.0
    assert job.status == "step 4 of 4"
    assert job.metrics == {"step": 4}


def test_cancelled_running_job_stops_at_its_next_check_and_ends_cancelled(workers):
    message = stepper.send(steps=200, step_s=0.01 * 5)
    wait_until(lambda: get_job(message.message_id).progress > 0, what="job to make progress")
    request_cancel(message.message_id)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "cancelled"
    assert job.progress < 1.0
    assert job.attempts == 1


def test_cancel_job_sent_to_the_high_priority_worker_stops_a_running_job(workers):
    # Given a running job, and a caller that can only send messages
    from actors.control import cancel_job

    message = stepper.send(steps=200, step_s=0.01 * 5)
    wait_until(lambda: get_job(message.message_id).progress > 0, what="job to make progress")
    # When it sends cancel_job to a real high_priority worker
    control = wait_for_job(cancel_job.send(message_id=message.message_id).message_id, timeout_s=30)
    # Then the cancel job succeeds saying what it asked, and the target stops at its next check
    assert control.state == "succeeded", control.error_message
    assert control.result["message_id"] == message.message_id and control.result["cancel_requested"] is True
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "cancelled" and job.progress < 1.0 and job.attempts == 1


def test_job_record_reaches_the_database(workers, pg_url):
    from sqlalchemy import create_engine, text

    message = stepper.send(steps=1, step_s=0)
    wait_for_job(message.message_id, timeout_s=30)
    engine = create_engine(pg_url)
    try:
        def row():
            with engine.connect() as conn:
                return conn.execute(
                    text("select state, progress, attempts, actor, queue from jobs where message_id = :m"),
                    {"m": message.message_id},
                ).first()

        found = wait_until(lambda: (r := row()) is not None and r.state == "succeeded" and r, what="job row")
        assert tuple(found) == ("succeeded", 1.0, 1, "stepper", "cpu_processing")
    finally:
        engine.dispose()


def test_job_log_is_json_lines_with_identity_and_a_final_line_with_duration(workers):
    message = stepper.send(steps=2, step_s=0)
    wait_for_job(message.message_id, timeout_s=30)

    def lines():
        found = []
        for raw in workers.log("cpu_processing").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("message_id") == message.message_id:
                found.append(record)
        return found

    records = wait_until(lambda: [r for r in lines() if r.get("event") == "job.finished"] and lines(), what="log")
    for record in records:
        assert {"message_id", "actor", "queue", "attempt"} <= record.keys()
        assert record["actor"] == "stepper" and record["queue"] == "cpu_processing" and record["attempt"] == 1
    final = records[-1]
    assert final["event"] == "job.finished"
    assert final["outcome"] == "succeeded"
    assert final["duration_ms"] >= 0


def _dead_lettered(redis_client, queue: str, message_id: str) -> bool:
    return any(letter.message_id == message_id for letter in list_dead_letters(redis_client, queue, limit=1000))


def test_a_result_can_be_awaited_for_longer_than_five_seconds(workers):
    # redis-py 8 reads with a 5 s timeout by default; blocking result reads must outlast it.
    from tests.probe_actors import durable_work

    message = durable_work.send(key=_key(), seconds=6)
    assert message.get_result(block=True, timeout=30_000) == {"done": True}
