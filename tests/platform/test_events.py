"""Outcomes reach the notifications queue: job.failed for failures, dataset events."""

from __future__ import annotations

import uuid

import dramatiq
import pytest
from sqlalchemy import select

from actors.datasets import generate_dataset
from actors.platform.broker.command_batch import Batch
from actors.platform.broker.consumer import TrackedMessage
from actors.platform.errors import JobNotFound, PayloadInvalid
from actors.platform.jobs import get_job, wait_for_job
from actors.platform.middleware.tracking import JobTracking
from actors.store.db import get_database
from actors.store.notifications import InboxItem
from config.settings import get_settings
from tests.waiting import wait_until


def _inbox(event_id: str) -> list[InboxItem]:
    with get_database(get_settings().database_url).session() as session:
        return list(session.scalars(select(InboxItem).where(InboxItem.event_id == event_id)))


def test_a_job_that_fails_after_its_retries_is_announced_once_as_job_failed(workers):
    message = dramatiq.Message(queue_name="high_priority", actor_name="strict", args=(),
                               kwargs={"key": "x", "failures": "many"}, options={})
    dramatiq.get_broker().enqueue(message)
    assert wait_for_job(message.message_id, timeout_s=30).state == "failed"
    rows = wait_until(lambda: _inbox(f"job.failed:{message.message_id}"), what="the job.failed inbox row")
    assert len(rows) == 1
    assert rows[0].event_type == "job.failed"
    assert rows[0].payload["actor"] == "strict" and rows[0].payload["error_type"] == "PayloadInvalid"
    assert rows[0].link.startswith(get_settings().dashboard_url)


def test_a_generated_dataset_is_announced_as_dataset_generated(workers):
    dataset_id = f"ev-{uuid.uuid4().hex[:8]}"
    message = generate_dataset.send(dataset_id=dataset_id, fault_types=["sain"], records_per_class=1)
    assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
    rows = wait_until(lambda: _inbox(f"dataset.generated:{dataset_id}"), what="the dataset.generated inbox row")
    assert rows[0].payload["n_records"] == 1


def test_a_final_failure_is_announced_in_the_ack_that_records_it(workers):
    """The job.failed message rides in the ack's transaction: nothing reaches Redis before the ack."""
    broker = dramatiq.get_broker()
    failed = TrackedMessage(dramatiq.Message(queue_name="high_priority", actor_name="strict", args=(),
                                             kwargs={"key": "x", "failures": "many"}, options={}))
    event = JobTracking._announce_failure(broker, failed, None, PayloadInvalid("bad"), "bad")
    assert event is not None and event.kwargs["event_id"] == f"job.failed:{failed.message_id}"
    assert failed.ride_along
    with pytest.raises(JobNotFound):
        get_job(event.message_id)

    batch = Batch(broker.client, transaction=True)
    for write in failed.ride_along:
        write(batch)
    batch.execute()
    # Queued in that transaction, then delivered by the notifications worker.
    rows = wait_until(lambda: _inbox(event.kwargs["event_id"]), what="the job.failed inbox row")
    assert get_job(event.message_id) is not None and len(rows) == 1
