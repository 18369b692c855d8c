"""The Redis broker, hardened: a message that is not JSON is dead-lettered, never run.

Dramatiq's Redis consumer lets a ``DecodeError`` escape: the consumer thread restarts,
the messages it had prefetched stay unacknowledged until the worker process restarts, and
the bad message comes back and does the same after every restart. Here the consumer moves
the body it could not read to the queue's dead letters (``.XQ``) and goes on; nothing in it
is ever unpickled or evaluated.
"""

from __future__ import annotations

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.broker import MessageProxy

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
    """A ``RedisBroker`` whose consumers dead-letter any message body they cannot decode."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        """The consumer that refuses undecodable bodies."""
        return _JsonOnlyConsumer
