"""One notification delivered in this process: channels, preferences, idempotency, failures, pausing."""

from __future__ import annotations

import threading

import pytest

from actors.notifications import Notify, deliver, send_event
from actors.platform.errors import PayloadInvalid, TransientError
from actors.store.notifications import (
    get_channel_health,
    get_delivery,
    list_inbox,
    resume_channel,
    set_preference,
)
from pipeline.notify.webhook import SIGNATURE_HEADER, verify
from tests.notifications.conftest import DASHBOARD_URL, RECIPIENT, WEBHOOK_SECRET

GENERATED = {"dataset_id": "ds-42", "name": "bearing set", "n_records": 80}


def _notify(event: str = "dataset.generated", payload: dict | None = None, user: str = "default") -> Notify:
    return Notify(event=event, payload=GENERATED if payload is None else payload, user=user)


def test_event_goes_to_the_inbox_by_email_and_by_signed_webhook_with_a_dashboard_link(
    settings, database, smtp, hooks, event_id
):
    result = deliver(_notify(), settings, database, event_id=event_id)

    assert result["channels"] == {"email": "sent", "webhook": "sent"}
    assert result["inbox"] == "written"
    link = result["link"]
    assert link == DASHBOARD_URL + "datasets/ds-42"
    (mail,) = smtp[1].for_event(event_id)
    assert mail.subject == "[PFD] Dataset ds-42 generated (80 records)"
    assert mail.rcpt_tos == [RECIPIENT]
    assert link in mail.body
    (hook,) = hooks.for_event(event_id)
    assert verify(WEBHOOK_SECRET, hook.body, hook.header(SIGNATURE_HEADER))
    assert hook.document["event"] == "dataset.generated" and hook.document["link"] == link
    assert hook.document["payload"]["dataset_id"] == "ds-42"
    (item,) = [i for i in list_inbox(database, "default") if i["event_id"] == event_id]
    assert item["subject"] == mail.subject and item["link"] == link and not item["read"]


def test_delivering_the_same_event_again_sends_nothing_twice(settings, database, smtp, hooks, event_id):
    deliver(_notify(), settings, database, event_id=event_id)
    again = deliver(_notify(), settings, database, event_id=event_id)
    assert again["inbox"] == "exists"
    assert again["channels"] == {"email": "sent", "webhook": "sent"}
    assert len(smtp[1].for_event(event_id)) == 1
    assert len(hooks.for_event(event_id)) == 1
    assert get_delivery(database, event_id, "email")["attempts"] == 1


def test_preferences_turn_a_channel_off_per_user_and_event_type(settings, database, smtp, hooks, event_id):
    set_preference(database, "pref-user", "dataset.generated", "email", False)
    set_preference(database, "pref-user", "*", "webhook", False)
    settings = replace_settings(settings, notify_user_emails={"pref-user": "pref@example.test"})
    result = deliver(_notify(user="pref-user"), settings, database, event_id=event_id)
    assert result["channels"] == {"email": "off", "webhook": "off"}
    assert result["inbox"] == "written"
    assert smtp[1].for_event(event_id) == [] and hooks.for_event(event_id) == []
    set_preference(database, "pref-user", "dataset.generated", "email", True)
    result = deliver(_notify(user="pref-user"), settings, database, event_id=event_id + "-2")
    assert result["channels"] == {"email": "sent", "webhook": "off"}


def test_progress_events_reach_only_the_inbox_by_default(settings, database, smtp, hooks, event_id):
    payload = {"message_id": "m-1", "actor": "train", "progress": 0.25, "status": "epoch 5 of 20"}
    result = deliver(_notify("job.progress", payload), settings, database, event_id=event_id)
    assert result == {**result, "inbox": "written", "channels": {"email": "off", "webhook": "off"}}
    assert result["link"] == DASHBOARD_URL + "jobs/m-1"


def test_unconfigured_channels_are_skipped_and_the_inbox_still_written(settings, database, event_id):
    bare = replace_settings(settings, smtp_host="", webhook_url="")
    result = deliver(_notify(), bare, database, event_id=event_id)
    assert result["channels"] == {"email": "not_configured", "webhook": "not_configured"}
    assert result["inbox"] == "written"
    unknown_user = replace_settings(settings, webhook_url="")
    result = deliver(_notify(user="nobody"), unknown_user, database, event_id=event_id + "-2")
    assert result["channels"]["email"] == "no_address"


def test_permanent_webhook_failure_is_recorded_and_the_email_still_sent(settings, database, smtp, hooks, event_id):
    hooks.script(event_id, 400)
    result = deliver(_notify(), settings, database, event_id=event_id)  # no TransientError: not retried
    assert result["channels"] == {"email": "sent", "webhook": "failed"}
    assert get_delivery(database, event_id, "webhook")["state"] == "failed"
    assert "400" in get_delivery(database, event_id, "webhook")["last_error"]
    assert deliver(_notify(), settings, database, event_id=event_id)["channels"]["webhook"] == "failed"
    assert len(hooks.for_event(event_id)) == 1


def test_refused_recipient_fails_the_email_for_good(settings, database, smtp, event_id):
    refused = replace_settings(settings, notify_email_to="refuse@example.test", webhook_url="")
    result = deliver(_notify(), refused, database, event_id=event_id)
    assert result["channels"]["email"] == "failed"
    assert "550" in get_delivery(database, event_id, "email")["last_error"]


def test_transient_failure_raises_for_a_retry_that_sends_only_what_is_missing(
    settings, database, smtp, hooks, event_id
):
    hooks.script(event_id, 503)
    with pytest.raises(TransientError, match="webhook: webhook at 127.0.0.1 answered 503"):
        deliver(_notify(), settings, database, event_id=event_id)
    assert get_delivery(database, event_id, "webhook")["state"] == "retrying"
    result = deliver(_notify(), settings, database, event_id=event_id)
    assert result["channels"] == {"email": "sent", "webhook": "sent"}
    assert len(smtp[1].for_event(event_id)) == 1
    assert len(hooks.for_event(event_id)) == 2
    assert get_delivery(database, event_id, "webhook")["attempts"] == 2


def test_transient_failure_on_the_last_attempt_is_recorded_failed(settings, database, hooks, event_id):
    hooks.script(event_id, 500)
    result = deliver(_notify(), settings, database, event_id=event_id, last_attempt=True)
    assert result["channels"]["webhook"] == "failed"


def test_channel_failing_in_a_row_is_paused_reported_and_resumed(settings, database, smtp, hooks, event_id):
    limited = replace_settings(settings, notify_channel_failure_limit=2)
    hooks.script(event_id, 500, 500)
    with pytest.raises(TransientError):
        deliver(_notify(), limited, database, event_id=event_id)
    # The second failure in a row pauses the channel: reported, and no more retries.
    result = deliver(_notify(), limited, database, event_id=event_id)
    assert result["channels"]["webhook"] == "paused"
    assert result["paused_channels"] == ["webhook"]
    assert get_channel_health(database, "webhook")["paused"]
    # While paused, other events skip the webhook without calling it.
    other = deliver(_notify(), limited, database, event_id=event_id + "-b")
    assert other["channels"] == {"email": "sent", "webhook": "paused"}
    assert hooks.for_event(event_id + "-b") == []
    # After the pause, one attempt probes the channel again; success resumes it.
    probing = replace_settings(limited, notify_channel_pause_s=0)
    assert deliver(_notify(), probing, database, event_id=event_id + "-c")["channels"]["webhook"] == "sent"
    assert get_channel_health(database, "webhook") == {
        **get_channel_health(database, "webhook"),
        "paused": False,
        "consecutive_failures": 0,
    }
    resume_channel(database, "webhook")


def test_two_senders_of_one_event_send_it_once(settings, database, smtp, hooks, event_id):
    # Given a slow receiver, when a redelivered copy runs while the first is still sending,
    hooks.delay_s = 0.5

    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(deliver(_notify(), settings, database, event_id=event_id))
        except TransientError as exc:
            outcomes.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        hooks.delay_s = 0.0
    # then each channel was sent once, and a copy that found a channel busy asks for a retry,
    assert len(hooks.for_event(event_id)) == 1
    assert len(smtp[1].for_event(event_id)) == 1
    assert any(isinstance(o, TransientError) for o in outcomes)
    # which finds every channel sent and sends nothing more.
    assert deliver(_notify(), settings, database, event_id=event_id)["channels"] == {"email": "sent", "webhook": "sent"}
    assert len(hooks.for_event(event_id)) == 1 and len(smtp[1].for_event(event_id)) == 1


def test_unknown_event_or_bad_payload_is_refused_on_send(app):
    with pytest.raises(PayloadInvalid, match="unknown event type 'training.done'"):
        send_event("training.done", {"experiment_id": "e"})
    with pytest.raises(PayloadInvalid, match="n_records: Input should be greater than or equal to 0"):
        send_event("dataset.generated", {"dataset_id": "d", "n_records": -5})
    with pytest.raises(PayloadInvalid, match="user"):
        send_event("dataset.generated", GENERATED, user="no spaces allowed")


def test_send_event_enqueues_a_normalised_payload_on_the_notifications_queue(app, monkeypatch):
    from actors.notifications import notify

    monkeypatch.setattr(notify.broker, "enqueue", lambda message, **_: message)  # keep it off the queue
    message = send_event("training.completed", {"experiment_id": "e-1", "metrics": {"acc": 1}}, user="ana")
    assert message.queue_name == "notifications" and message.actor_name == "notify"
    assert message.kwargs["payload"]["metrics"] == {"acc": 1.0}
    assert message.kwargs["user"] == "ana" and message.kwargs["event_id"] is None


def replace_settings(settings, **changes):  # type: ignore[no-untyped-def]
    """A copy of ``settings`` with some fields changed."""
    return settings.model_copy(update=changes)
