"""The Redis broker, hardened against three faults that strand or lose messages in Dramatiq 2.2.

Dramatiq's Redis consumer lets a ``DecodeError`` or a lost connection escape to its consumer
thread, which then drops the consumer (with the messages it had prefetched) and, for a
connection error, the worker's in-memory delay queue (delayed messages and retries waiting
for their time). Those messages stay in the worker's unacknowledged set, so nothing brings
them back until the worker process is restarted; a bad body then strands them again.

Here the consumer moves a body it cannot read to the queue's dead letters (``.XQ``) unread
(nothing in it is ever unpickled or evaluated), and waits out a Redis outage in place, so
the prefetched and delayed messages it holds run once Redis answers again. Third, a retry
enqueued while Redis is down would fail after its attempt was acked: ``enqueue`` waits.
"""

from __future__ import annotations

import math
import threading
import time

import redis
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message
from dramatiq.worker import WorkerThread

__all__ = ["UNDECODABLE_REASON", "JsonOnlyRedisBroker"]

log = structlog.get_logger("pfd.broker")

UNDECODABLE_REASON = "not a JSON message; refused unread"


class _JsonOnlyConsumer(_RedisConsumer):
    def __next__(self) -> MessageProxy | None:
        while True:
            try:
                return super().__next__()
            except DecodeError as exc:
                self._dead_letter(exc)
            except ConnectionClosed as exc:
                self._wait_for_redis(exc)
                return None

    def requeue(self, messages) -> None:  # type: ignore[no-untyped-def]
        """Put messages back on the queue; a lost connection is a broker connection error."""
        # Unwrapped, the redis error escapes the consumer thread's close() and ends the thread.
        try:
            super().requeue(messages)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None

    def _wait_for_redis(self, exc: ConnectionClosed) -> None:
        """Block until Redis answers again (or the worker stops), keeping what this consumer holds."""
        log.warning("broker.redis_unreachable", queue=self.queue_name, error=str(exc))
        started, pause = time.monotonic(), 0.1
        # The caller is Dramatiq's consumer thread; its ``running`` flag drops when the worker stops.
        while getattr(threading.current_thread(), "running", True):
            try:
                self.broker.client.ping()
            except redis.ConnectionError:
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            log.info("broker.redis_back", queue=self.queue_name, down_s=round(time.monotonic() - started, 2))
            return

    def _dead_letter(self, exc: DecodeError) -> None:
        """Find the unreadable body among this worker's fetched ids and nack it."""
        broker: RedisBroker = self.broker
        client = broker.client
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        try:
            redis_ids = list(client.smembers(acks))
            bodies = client.hmget(f"{broker.namespace}:{self.queue_name}.msgs", redis_ids) if redis_ids else []
            for redis_id, body in zip(redis_ids, bodies):
                if body == exc.data:
                    broker.do_nack(self.queue_name, redis_id.decode())
                    log.error("message.refused", queue=self.queue_name, redis_id=redis_id.decode(),
                              reason=UNDECODABLE_REASON, bytes=len(exc.data), error=type(exc.error).__name__)
                    return
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        # Already gone (another worker's maintenance requeued it): nothing left to move.
        log.error("message.refused", queue=self.queue_name, reason=UNDECODABLE_REASON, bytes=len(exc.data),
                  error=type(exc.error).__name__, dead_lettered=False)


class JsonOnlyRedisBroker(RedisBroker):
    """A ``RedisBroker`` whose consumers dead-letter bodies they cannot decode and wait out
    Redis outages, and whose ``enqueue`` waits for Redis to answer (see ``enqueue``)."""

    def __init__(self, *, enqueue_wait_s: float = 30.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.enqueue_wait_s = enqueue_wait_s

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue ``message``, waiting while Redis is unreachable.

        A producer waits up to ``enqueue_wait_s``, then gets the connection error. A worker
        thread waits until Redis is back, as Dramatiq waits to ack: a retry is enqueued by
        the worker that ran the failed attempt and then acks it, so giving up would lose it.
        """
        in_worker = isinstance(threading.current_thread(), WorkerThread)
        deadline = math.inf if in_worker else time.monotonic() + self.enqueue_wait_s
        pause, warned = 0.1, False
        while True:
            try:
                return super().enqueue(message, delay=delay)
            except redis.ConnectionError as exc:
                if time.monotonic() + pause > deadline:
                    raise
                if not warned:
                    log.warning("broker.enqueue_waiting", message_id=message.message_id, error=str(exc),
                                wait_s=None if in_worker else self.enqueue_wait_s)
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        """The consumer that refuses undecodable bodies."""
        return _JsonOnlyConsumer
