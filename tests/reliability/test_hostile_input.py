"""Hostile input: fuzzed payloads never crash validation; secrets never reach records or logs."""

from __future__ import annotations

import dramatiq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.platform.base import PayloadActor, validate_payload
from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import wait_for_job
from tests.probe_actors import leaky
from tests.waiting import wait_until

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50) | st.just("x" * 100_000),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)


def _schema_actors() -> list[PayloadActor]:
    return sorted((a for a in dramatiq.get_broker().actors.values() if getattr(a, "schema", None)),
                  key=lambda a: a.actor_name)


@pytest.mark.parametrize("actor", _schema_actors(), ids=lambda a: a.actor_name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.dictionaries(st.text(max_size=30), JSONISH, max_size=6))
def test_any_payload_either_validates_or_is_refused_with_payload_invalid(actor, payload):
    try:
        validated = validate_payload(actor.actor_name, actor.schema, payload)
    except PayloadInvalid as exc:
        assert str(exc).startswith(f"invalid payload for {actor.actor_name}: ")
        return
    # Whatever validates is plain JSON again (messages are JSON only).
    dumped = validated.model_dump(mode="json")
    assert validate_payload(actor.actor_name, actor.schema, dumped) == validated


def test_a_password_in_a_url_is_masked_in_the_job_record_and_every_log_line(workers):
    message = leaky.send(url="postgresql://pfd:hunter2-secret@db.internal:5432/pfd")
    job = wait_for_job(message.message_id, timeout_s=30)
    assert job.state == "failed"
    assert "hunter2-secret" not in job.error_message
    assert "postgresql://pfd:***@db.internal:5432/pfd" in job.error_message
    log = wait_until(lambda: message.message_id in (text := workers.log("high_priority")) and text,
                     what="the job's log lines")
    assert "probe.connecting" in log
    assert "hunter2-secret" not in log
