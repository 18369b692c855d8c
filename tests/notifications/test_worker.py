"""Notifications through the queue, with the Procfile's notifications worker as a real process."""

from __future__ import annotations

import json
import re
import uuid

import dramatiq

from actors.notifications import notify
from actors.platform.jobs import wait_for_job
from actors.store.notifications import get_delivery, list_inbox
from pipeline.notify.webhook import SIGNATURE_HEADER, verify
from tests.notifications import lane
from tests.notifications.conftest import DASHBOARD_URL, RECIPIENT, WEBHOOK_SECRET
from tests.waiting import wait_until


def _send(event: str, payload: dict, **options) -> dramatiq.Message:  # type: ignore[no-untyped-def]
    """``send_event`` as a producer calls it, onto the test worker's private queue."""
    return lane.enqueue(notify.message(event=event, payload=payload, **options))


def _event_id() -> str:
    return f"ev-worker-{uuid.uuid4().hex[:12]}"


def _finished(workers, message_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The worker's ``job.finished`` log records of one message."""
    records = []
    for line in workers.log("notifications").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "job.finished" and record.get("message_id") == message_id:
            records.append(record)
    return records


def test_event_sent_through_the_queue_arrives_by_email_and_signed_webhook_with_dashboard_links(
    notify_worker, smtp, hooks, database
):
    message = _send(
        "training.completed", {"experiment_id": "exp-7", "model": "resnet1d", "metrics": {"accuracy": 0.981}}
    )
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded", job.error_message
    assert job.result["channels"] == {"email": "sent", "webhook": "sent"}
    event_id = job.result["event_id"]

    (mail,) = smtp[1].for_event(event_id)
    assert mail.subject == "[PFD] Training of exp-7 completed"
    assert mail.rcpt_tos == [RECIPIENT] and mail.message["To"] == RECIPIENT
    links = re.findall(r"https?://\S+", mail.body)
    assert links == [DASHBOARD_URL + "experiments/exp-7"]
    (hook,) = hooks.for_event(event_id)
    assert verify(WEBHOOK_SECRET, hook.body, hook.header(SIGNATURE_HEADER))
    assert hook.document["link"] == links[0] and hook.document["payload"]["metrics"] == {"accuracy": 0.981}
    assert [i["subject"] for i in list_inbox(database, "default") if i["event_id"] == event_id] == [mail.subject]


def test_webhook_answering_500_is_retried_with_backoff_until_it_is_delivered(notify_worker, smtp, hooks, database):
    event_id = _event_id()
    hooks.script(event_id, 500)
    message = _send("hpo.failed", {"study_id": "st-9", "error": "storage unreachable"}, event_id=event_id)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded", job.error_message
    assert job.attempts == 2
    assert len(hooks.for_event(event_id)) == 2
    assert len(smtp[1].for_event(event_id)) == 1  # the retry did not send the e-mail again
    assert get_delivery(database, event_id, "webhook")["state"] == "sent"


def test_webhook_answering_400_is_recorded_failed_and_not_retried(notify_worker, smtp, hooks, database):
    event_id = _event_id()
    hooks.script(event_id, 400)
    message = _send(
        "deployment.ready", {"deployment_id": "d-1", "model_id": "m-1", "format": "onnx"}, event_id=event_id
    )
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "succeeded" and job.attempts == 1
    assert job.result["channels"] == {"email": "sent", "webhook": "failed"}
    assert len(hooks.for_event(event_id)) == 1
    delivery = get_delivery(database, event_id, "webhook")
    assert delivery["state"] == "failed" and "400" in delivery["last_error"]


def test_the_same_message_delivered_twice_sends_once_per_channel(notify_worker, smtp, hooks, database):
    # Given one notification message enqueued twice (as a redelivery after a lost ack does),
    message = notify.message(event="dataset.imported", payload={"dataset_id": "ds-r", "n_records": 9, "n_files": 3})
    lane.enqueue(message)
    lane.enqueue(message)
    # when the worker has run both copies to the end,
    wait_until(
        lambda: len([r for r in _finished(notify_worker, message.message_id) if r["outcome"] == "succeeded"]) >= 2,
        timeout=30,
        what="both copies to finish",
    )
    # then each channel delivered once, under the event id derived from the message id.
    event_id = wait_for_job(message.message_id, timeout_s=10).result["event_id"]
    assert len(smtp[1].for_event(event_id)) == 1
    assert len(hooks.for_event(event_id)) == 1
    assert len([i for i in list_inbox(database, "default", limit=500) if i["event_id"] == event_id]) == 1
    assert get_delivery(database, event_id, "email")["attempts"] == 1


def test_message_with_an_unknown_event_fails_once_and_writes_nothing(notify_worker, hooks, database):
    # A message built by hand skips the checks of send(); the worker refuses it.
    message = dramatiq.Message(
        queue_name=lane.QUEUE,
        actor_name="notify",
        args=(),
        kwargs={"event": "training.done", "payload": {}},
        options={},
    )
    lane.enqueue(message)
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "failed" and job.attempts == 1
    assert job.error_type == "PayloadInvalid"
    assert "unknown event type 'training.done'" in job.error_message
    assert get_delivery(database, f"ev-{message.message_id}", "webhook") is None
