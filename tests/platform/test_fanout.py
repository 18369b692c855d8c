"""Fan-out through real workers: a group, its callback once, counts, progress, failures."""

from __future__ import annotations

import uuid

import dramatiq

from actors.platform.fanout import fan_out, get_fanout
from actors.platform.jobs import get_job
from tests.probe_actors import collect, square
from tests.waiting import wait_until


def _run(redis_client, members):  # type: ignore[no-untyped-def]
    key = f"test:{uuid.uuid4().hex}"
    fanout_id = str(uuid.uuid4())
    fan_out(members, kind="test", owner_id=key, fanout_id=fanout_id,
            finalize=collect.message(fanout_id=fanout_id, key=key))
    view = wait_until(lambda: (v := get_fanout(fanout_id)) and v.state == "completed" and v, timeout=60,
                      what="the fan-out to finalize")
    return key, view


def test_fanout_runs_every_member_and_its_callback_once(workers, redis_client):
    members = [square.message(n=n) for n in range(6)]
    key, view = _run(redis_client, members)
    assert (view.total, view.done, view.failed) == (6, 6, 0)
    assert view.progress == 1.0
    assert view.result == {"done": 6, "failed": 0}
    for member in members:
        job = get_job(member.message_id)
        assert job.state == "succeeded" and job.fanout_id is not None
    assert int(redis_client.get(f"{key}:finalized")) == 1


def test_a_member_is_counted_before_its_groups_callback_can_fire():
    # After-hooks run in reverse middleware order: the counter must come after GroupCallbacks.
    from dramatiq.middleware import GroupCallbacks

    import actors.app  # noqa: F401  (builds the broker with every middleware)
    from actors.platform.middleware import FanoutMembers

    kinds = [type(m) for m in dramatiq.get_broker().middleware]
    assert kinds.index(FanoutMembers) == kinds.index(GroupCallbacks) + 1


def test_a_member_failing_on_its_input_does_not_lose_the_others(workers, redis_client):
    members = [square.message(n=n, fail=(n == 2)) for n in range(4)]
    key, view = _run(redis_client, members)
    assert (view.done, view.failed) == (3, 1)
    failed = get_job(members[2].message_id)
    assert (failed.state, failed.error_type, failed.attempts) == ("failed", "InvalidInput", 1)
    assert "member 2 refused its input" in failed.error_message
    assert get_job(members[3].message_id).result == {"square": 9}
    assert int(redis_client.get(f"{key}:finalized")) == 1


def test_a_dead_lettered_member_still_lets_the_fanout_finalize_once(workers, redis_client):
    # Dramatiq never fires a group callback once a member is dead-lettered: the backstop does.
    members = [square.message(n=n, crash=(n == 1)) for n in range(3)]
    key, view = _run(redis_client, members)
    assert (view.done, view.failed) == (2, 1)
    assert get_job(members[1].message_id).state == "failed"
    assert int(redis_client.get(f"{key}:finalized")) == 1
