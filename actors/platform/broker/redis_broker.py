"""The Redis broker: one round trip per enqueue and per batch of acks, and no lost messages.

Dramatiq 2.2's Redis broker strands or loses messages on three faults, and costs more
round trips than it needs:

- a body it cannot decode, or a lost connection, ends its consumer with the messages it
  prefetched and (for a connection error) the worker's delayed messages and retries; they
  stay in the worker's unacknowledged set until the process restarts. The consumer here
  (``actors.platform.broker.consumer``) dead-letters such a body unread and waits out an outage;
- a retry enqueued while Redis is down fails after its attempt was acked: ``enqueue``
  here waits for Redis;
- its consumer polls with a back-off of up to a second; here every enqueue also pushes
  the queue's wake list, on which idle consumers block;
- it redelivers a dead worker's messages on a random chance per command; here the sweep
  (``actors.platform.redelivery``) does, once a second, and counts each redelivery.

What middleware must write with a message (its job record) rides in the same MULTI/EXEC
as the enqueue (``ride_along_enqueue``) or the ack (``TrackedMessage.ride_along``).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from uuid import uuid4

import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.redis import _scripts as _dramatiq_scripts
from dramatiq.common import current_millis, dq_name
from dramatiq.message import Message
from dramatiq.worker import ConsumerThread, WorkerThread

from actors.platform.broker.command_batch import Batch, register_script
from actors.platform.broker.connection import redis_setup_fault
from actors.platform.broker.consumer import REDIS_DOWN, UNDECODABLE_REASON, AckBatch, WakingConsumer

__all__ = ["UNDECODABLE_REASON", "WAKE_TOKENS", "JsonOnlyRedisBroker"]

log = structlog.get_logger("pfd.broker")

# Wake tokens kept per queue: enough to wake every idle consumer of a queue at once; a
# stale token only costs its consumer one empty fetch.
WAKE_TOKENS = 64


class JsonOnlyRedisBroker(RedisBroker):
    """A ``RedisBroker`` that refuses bodies it cannot decode, waits out Redis outages, wakes
    idle consumers on enqueue and batches acks with the job states they carry."""

    def __init__(self, *, enqueue_wait_s: float = 30.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        for name, text in _dramatiq_scripts.items():
            self.scripts[name] = register_script(self.client, text)
        self.enqueue_wait_s = enqueue_wait_s
        self.acks = AckBatch(self)
        self._enqueue_writes = threading.local()

    @property
    def consumer_class(self) -> type[WakingConsumer]:
        """The consumer that blocks for new messages and batches its acks."""
        return WakingConsumer

    def wake_key(self, queue_name: str) -> str:
        """The list that an enqueue on ``queue_name`` pushes and its idle consumers block on."""
        return f"{self.namespace}:{queue_name}.wake"

    def ride_along_enqueue(self, write: Callable[[Batch], None]) -> bool:
        """From a ``before_enqueue`` hook: send ``write`` in the enqueue's own round trip.

        Returns False outside an enqueue of this broker (the caller then writes itself).
        """
        writes = getattr(self._enqueue_writes, "pending", None)
        if writes is None:
            return False
        writes.append(write)
        return True

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue ``message``, waiting while Redis is unreachable.

        A producer waits up to ``enqueue_wait_s``, then gets the connection error. A worker's
        own threads wait until Redis is back, as Dramatiq waits to ack: a retry is enqueued by
        the worker that ran the failed attempt and then acks it, and a delayed message that
        fell due is moved by the consumer thread that holds it; giving up would lose either.
        """
        # A worker thread enqueues retries, the consumer thread delayed messages that fell due.
        in_worker = isinstance(threading.current_thread(), (WorkerThread, ConsumerThread))
        deadline = math.inf if in_worker else time.monotonic() + self.enqueue_wait_s
        pause, warned = 0.1, False
        while True:
            try:
                return self._enqueue_once(message, delay)
            except REDIS_DOWN as exc:
                # Refused credentials or TLS are no outage: waiting would only hide them.
                if time.monotonic() + pause > deadline or redis_setup_fault(exc):
                    raise
                if not warned:
                    log.warning("broker.enqueue_waiting", message_id=message.message_id, error=str(exc),
                                wait_s=None if in_worker else self.enqueue_wait_s)
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _enqueue_once(self, message: Message, delay: int | None) -> Message:
        message, write = self.prepare_enqueue(message, delay=delay)
        batch = Batch(self.client, transaction=True)
        write(batch)
        batch.execute()
        self.emit_after("enqueue", message, delay)
        return message

    def prepare_enqueue(self, message: Message, *, delay: int | None = None) -> tuple[Message, Callable[[Batch], None]]:
        """Run ``message``'s enqueue hooks now and return it with the write that enqueues it.

        The write (the message, its hooks' writes and the wake-up) can go into any
        transaction: ``enqueue`` sends it on its own; a message announcing an outcome sends it
        with the ack that records the outcome (``TrackedMessage.ride_along``), so the two are
        one fact. A write sent twice (a transaction retried after its reply was lost) enqueues
        the message twice: carry only idempotent messages this way.
        """
        # As RedisBroker.enqueue, with the writes of before_enqueue hooks and the wake-up in
        # the same transaction as the message.
        queue_name = message.queue_name
        message = message.copy(options={"redis_message_id": str(uuid4())})
        if delay is not None:
            queue_name = dq_name(queue_name)
            message = message.copy(queue_name=queue_name, options={"eta": current_millis() + delay})
        outer = getattr(self._enqueue_writes, "pending", None)  # a hook that enqueues, in turn
        self._enqueue_writes.pending = hook_writes = []
        try:
            self.emit_before("enqueue", message, delay)
        finally:
            self._enqueue_writes.pending = outer
        redis_message_id, body, wake = message.options["redis_message_id"], message.encode(), self.wake_key(queue_name)

        def write(batch: Batch) -> None:
            for hook_write in hook_writes:
                hook_write(batch)
            self.dispatch_into(batch, "enqueue", queue_name, redis_message_id, body)
            batch.command("LPUSH", wake, 1)
            batch.command("LTRIM", wake, 0, WAKE_TOKENS - 1)

        return message, write

    def _should_do_maintenance(self, command: str) -> int:
        # Never on a command: dead workers and old dead letters are the sweep's
        # (``actors.platform.redelivery``), which runs on a fixed period and counts each
        # redelivery in its job record, where a random pass here would not.
        return 0

    def dispatch_into(self, batch: Batch, command: str, queue_name: str, *args: object) -> None:
        """Queue one call of Dramatiq's ``dispatch`` script (enqueue, ack, nack...) on ``batch``."""
        # The argument list of RedisBroker._dispatch, which only runs a call on its own.
        argv = [
            command, current_millis(), queue_name, self.broker_id, self.heartbeat_timeout,
            self.dead_message_ttl, self._should_do_maintenance(command), self._max_unpack_size(), *args,
        ]
        batch.script(self._dispatch_script, [self.namespace], argv)

    @functools.cached_property
    def _dispatch_script(self):  # type: ignore[no-untyped-def]
        return self.scripts["dispatch"]
