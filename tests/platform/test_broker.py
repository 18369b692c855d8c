"""The Redis broker's own mechanics, on real Redis: wake-ups, slot waits, batched acks, scripts, the sweep."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from dramatiq.common import current_millis
from dramatiq.message import Message
from redis import Redis
from redis.exceptions import ResponseError

from actors.platform.broker.command_batch import Batch
from actors.platform.broker.redis_broker import JsonOnlyRedisBroker
from actors.platform.redelivery import Redelivery, Swept
from actors.store.db import Database, migrate
from actors.store.jobs import JobStore
from actors.store.models import Job
from tests.servers import RedisServer
from tests.waiting import wait_until

# Far longer than any wait below: a consumer that returns in time was woken, not timed out.
IDLE_TIMEOUT_MS = 60_000


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    """A redis-server of this test's own, whose command counts nothing else touches."""
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


def _broker(client: Redis) -> JsonOnlyRedisBroker:
    return JsonOnlyRedisBroker(client=client, middleware=[])


def _message(queue: str, n: int = 0) -> Message:
    return Message(queue_name=queue, actor_name="probe", args=(n,), kwargs={}, options={})


def _next_in_thread(consumer) -> tuple[threading.Thread, list]:  # type: ignore[no-untyped-def]
    """Call ``next(consumer)`` in a thread; the list gets its answer."""
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(next(consumer)), daemon=True)
    thread.start()
    return thread, answers


def _blocked_on_blpop(client: Redis) -> bool:
    return any(c.get("cmd") == "blpop" for c in client.client_list())


def test_an_idle_consumer_blocks_on_the_wake_list_and_an_enqueue_wakes_it(private_redis):
    client = private_redis.client()
    broker = _broker(client)
    queue = f"wake-{uuid.uuid4().hex[:8]}"
    consumer = broker.consume(queue, prefetch=4, timeout=IDLE_TIMEOUT_MS)
    # Given a consumer that found nothing and waits
    thread, answers = _next_in_thread(consumer)
    wait_until(lambda: _blocked_on_blpop(client), what="the consumer to block on its wake list")
    # When a message is enqueued, the consumer returns long before its idle timeout
    broker.enqueue(_message(queue))
    thread.join(timeout=10)
    assert not thread.is_alive() and answers == [None]
    # Then its next call hands over the message
    message = next(consumer)
    assert message is not None and message.args == (0,)


def test_a_full_prefetch_window_waits_for_an_ack_not_for_a_poll(private_redis):
    client = private_redis.client()
    broker = _broker(client)
    queue = f"window-{uuid.uuid4().hex[:8]}"
    for n in range(2):
        broker.enqueue(_message(queue, n))
    consumer = broker.consume(queue, prefetch=1, timeout=IDLE_TIMEOUT_MS)
    first = next(consumer)
    assert first is not None
    # With its one slot taken, the consumer waits...
    thread, answers = _next_in_thread(consumer)
    thread.join(timeout=0.5)
    assert thread.is_alive(), "a full window must wait, not fetch past the prefetch"
    # ...until the ack frees the slot
    consumer.ack(first)
    thread.join(timeout=10)
    assert not thread.is_alive() and answers == [None]
    second = next(consumer)
    assert second is not None and second.args == (1,)


def test_acks_queued_while_one_is_being_sent_go_out_together_with_their_writes(private_redis):
    client = private_redis.client()
    broker = _broker(client)
    queue = f"acks-{uuid.uuid4().hex[:8]}"
    n = 24
    for i in range(n):
        broker.enqueue(_message(queue, i))
    consumer = broker.consume(queue, prefetch=n, timeout=IDLE_TIMEOUT_MS)
    messages = [next(consumer) for _ in range(n)]
    written = f"written-{queue}"
    others_queued = threading.Event()

    def write(message):  # type: ignore[no-untyped-def]
        def into(batch: Batch) -> None:
            if message is messages[0]:
                # The first ack's sender holds its round trip until every other ack is queued.
                others_queued.wait(10)
            batch.command("SADD", written, message.message_id)
        return into

    for message in messages:
        message.ride_along.append(write(message))
    execs_before = _command_calls(client, "exec")
    sender = threading.Thread(target=consumer.ack, args=(messages[0],))
    sender.start()
    wait_until(lambda: broker.acks._sending, what="the first ack to be sending")
    # Given 23 threads that ack while the first ack is on its way: none of them waits
    others = [threading.Thread(target=consumer.ack, args=(m,)) for m in messages[1:]]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(timeout=10)
        assert not thread.is_alive(), "an ack queued behind a send must not wait for it"
    others_queued.set()
    sender.join(timeout=10)
    # Then every message is acked, every write landed, in two transactions in all
    assert client.hlen(f"dramatiq:{queue}.msgs") == 0
    assert client.scard(f"dramatiq:__acks__.{broker.broker_id}.{queue}") == 0
    assert client.smembers(written) == {m.message_id.encode() for m in messages}
    assert _command_calls(client, "exec") - execs_before == 2
    assert consumer.outstanding_message_count == 0


def test_a_batch_reloads_scripts_redis_lost_and_runs_nothing_twice(private_redis):
    client = private_redis.client()
    incr = client.register_script("return redis.call('INCR', KEYS[1])")
    client.script_flush()  # what a Redis restart does to every loaded script
    for transaction in (False, True):
        client.delete("before", "counted", "after")
        batch = Batch(client, transaction=transaction)
        batch.command("INCR", "before")
        batch.script(incr, ["counted"], [])
        batch.command("INCR", "after")
        assert batch.execute() == [1, 1, 1]
        assert [client.get(k) for k in ("before", "counted", "after")] == [b"1", b"1", b"1"]
        client.script_flush()


def _command_calls(client: Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def fetched(private_redis):  # type: ignore[no-untyped-def]
    """(client, broker, consumer, message): one message fetched by a prefetch-1 consumer."""
    client = private_redis.client()
    broker = _broker(client)
    queue = f"one-{uuid.uuid4().hex[:8]}"
    broker.enqueue(_message(queue))
    consumer = broker.consume(queue, prefetch=1, timeout=IDLE_TIMEOUT_MS)
    return client, broker, consumer, next(consumer)


def test_a_write_that_cannot_be_built_is_left_out_and_its_message_still_acked(fetched):
    client, _, consumer, message = fetched

    def broken(batch: Batch) -> None:
        raise ValueError("a write that cannot be built")

    message.ride_along.append(broken)
    consumer.ack(message)  # as an after-hook's error: logged, never raised
    assert consumer.outstanding_message_count == 0
    assert client.hlen(f"dramatiq:{consumer.queue_name}.msgs") == 0


def test_an_ack_batch_that_redis_refuses_still_frees_its_slots_and_says_why(fetched):
    client, broker, consumer, message = fetched
    client.hset("a-hash", "field", "1")
    message.ride_along.append(lambda batch: batch.command("INCR", "a-hash"))  # WRONGTYPE at EXEC
    with pytest.raises(ResponseError):
        consumer.ack(message)
    # The window must not stay full (the consumer would wait for ever), and the next ack is sent.
    assert consumer.outstanding_message_count == 0
    assert not broker.acks._sending


def test_a_sweep_redelivers_a_dead_workers_messages_counted_and_wakes_their_consumers(private_redis, tmp_path):
    client = private_redis.client()
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    migrate(url)
    store = JobStore(client, Database(url), cache_ttl_s=60)
    queues = [f"sweep-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    dead, live = _broker(client), _broker(client)
    for queue in queues:
        dead.declare_queue(queue)
        live.declare_queue(queue)  # a sweep expires the dead letters of the queues its process knows
    sent = [dead.enqueue(_message(queue, n)) for queue in queues for n in range(2)]
    for message in sent:
        store.enqueued(message.message_id, "probe", message.queue_name)
    # Given a worker that fetched three messages on two queues and then died (its heartbeat
    # is older than the timeout), and a live one holding the fourth
    first, second = (dead.consume(queue, prefetch=p, timeout=IDLE_TIMEOUT_MS) for queue, p in zip(queues, (2, 1)))
    held = [next(first), next(first), next(second)]
    kept = next(live.consume(queues[1], prefetch=1, timeout=IDLE_TIMEOUT_MS))
    client.zadd("dramatiq:__heartbeats__", {dead.broker_id: current_millis() - dead.heartbeat_timeout - 1})
    # and a consumer waiting on the first queue, and a dead letter past its TTL
    waiting = live.consume(queues[0], prefetch=4, timeout=IDLE_TIMEOUT_MS)
    calls = [_next_in_thread(waiting)]

    def blocked() -> bool:
        # A wake token left by an earlier enqueue ends a call at once (it returns None, as after
        # any wake-up); the consumer thread then calls again, and that call blocks.
        thread, answers = calls[-1]
        if not thread.is_alive() and answers == [None]:
            calls.append(_next_in_thread(waiting))
        return _blocked_on_blpop(client)

    wait_until(blocked, what="the consumer to block on its wake list")
    thread, answers = calls[-1]
    client.zadd(f"dramatiq:{queues[1]}.XQ", {"old-letter": current_millis() - dead.dead_message_ttl - 1})
    client.hset(f"dramatiq:{queues[1]}.XQ.msgs", "old-letter", b"{}")

    swept = Redelivery(live, store).sweep()

    # Then the dead worker's three messages are back and counted, the waiting consumer woke,
    # the live worker's message stays where it is, and the old dead letter is gone
    assert swept == Swept(dead_workers=1, redelivered=3, expired_dead_letters=1)
    thread.join(timeout=10)
    # Woken, the call returns None, or (when the requeued messages were already there as it
    # fetched) the first of them: either way it did not wait out its timeout.
    assert not thread.is_alive() and len(answers) == 1
    woke_with = [answers[0]] if answers[0] is not None else []
    requeued = {m.message_id for m in woke_with + [next(waiting) for _ in range(2 - len(woke_with))]}
    assert requeued == {m.message_id for m in held if m.queue_name == queues[0]}
    assert [store.get(m.message_id).deliveries for m in held] == [1, 1, 1]
    assert store.get(kept.message_id).deliveries == 0
    assert client.zscore("dramatiq:__heartbeats__", dead.broker_id) is None
    assert client.zcard(f"dramatiq:{queues[1]}.XQ") == 0
    assert Redelivery(live, store).sweep() == Swept(dead_workers=0, redelivered=0, expired_dead_letters=0)
    store.flush(settle_s=0)
    with store.database.session() as session:
        assert session.get(Job, held[0].message_id).deliveries == 1
