"""The Redis consumer: woken by new messages, acking in batches that carry each job's state.

Dramatiq 2.2's Redis consumer polls: with nothing to fetch, or with its prefetch window
full, it sleeps a growing back-off of up to a second, so the first job after a quiet spell
waited hundreds of milliseconds and a full window idled the worker. This consumer instead
blocks on the queue's wake list (``BLPOP``, pushed by every enqueue) and, with its window
full, on an event set when an ack frees a slot.

Acks go out in batches (``AckBatch``): worker threads that finish while another thread is
sending acks leave theirs with it and move on. Each ack carries the writes that must land
with it (a job's outcome), in the same MULTI/EXEC, so a job is recorded final exactly when
its message is acked. A body that is not JSON is dead-lettered unread, and a Redis outage
is waited out in place, keeping the prefetched and delayed messages this consumer holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

from actors.platform.broker.command_batch import Batch, load_scripts
from actors.platform.broker.signing import SignatureRefused

if TYPE_CHECKING:
    from actors.platform.broker.redis_broker import JsonOnlyRedisBroker

__all__ = ["REDIS_DOWN", "UNDECODABLE_REASON", "AckBatch", "TrackedMessage", "WakingConsumer", "refusal_reason"]

log = structlog.get_logger("pfd.broker")

# What redis-py raises while Redis cannot be reached: a refused or lost connection, or (an
# unreachable host, dropped packets) a timeout, which is no ConnectionError in redis-py 8.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

UNDECODABLE_REASON = "not a JSON message; refused unread"


def refusal_reason(exc: DecodeError) -> str:
    """Why a body was refused unread: its signature's fault, or not being a message at all."""
    cause: BaseException = exc
    while isinstance(cause, DecodeError):  # Message.decode wraps the encoder's own DecodeError
        cause = cause.error
    return str(cause) if isinstance(cause, SignatureRefused) else UNDECODABLE_REASON


class TrackedMessage(MessageProxy):
    """A fetched message, with the Redis writes that must reach Redis together with its ack."""

    def __init__(self, message: Message) -> None:
        super().__init__(message)
        self.ride_along: list[Callable[[Batch], None]] = []


class WakingConsumer(_RedisConsumer):
    """Fetches up to its prefetch window; waits for a wake-up or a free slot instead of polling."""

    broker: JsonOnlyRedisBroker

    def __init__(self, broker, queue_name, prefetch, timeout):  # type: ignore[no-untyped-def]
        super().__init__(broker, queue_name, prefetch, timeout)
        self.slot_freed = threading.Event()
        self.wake_key = broker.wake_key(queue_name)

    def __next__(self) -> MessageProxy | None:
        """Return the next message, or None after a wait (so the consumer thread can do its rounds)."""
        while True:
            try:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:  # its body vanished between fetch and read (acked elsewhere)
                        continue
                    try:
                        message = Message.decode(data)
                    except DecodeError as exc:
                        self._dead_letter(exc)
                        continue
                    self.queued_message_ids.add(message.message_id)
                    return TrackedMessage(message)
                self.slot_freed.clear()
                free = self.prefetch - self.outstanding_message_count
                if free <= 0:
                    self.slot_freed.wait(self._idle_wait_s())
                    return None
                self.message_cache = self.broker.do_fetch(self.queue_name, free)
                if not self.message_cache:
                    self.broker.client.blpop([self.wake_key], timeout=self._idle_wait_s())
                    return None
            except (*REDIS_DOWN, ConnectionClosed) as exc:
                self._wait_for_redis(exc)
                return None

    def _idle_wait_s(self) -> float:
        """How long to wait for a wake-up or a slot: the idle timeout, or less when a delayed message falls due."""
        wait_s = self.timeout / 1000
        # The caller is Dramatiq's consumer thread; it moves due delayed messages after each wait.
        delayed = getattr(threading.current_thread(), "delay_queue", None)
        if delayed is not None and delayed.queue:
            due_in_s = (delayed.queue[0].priority - time.time() * 1000) / 1000
            wait_s = min(wait_s, due_in_s)
        return max(wait_s, 0.01)  # BLPOP's 0 would mean "for ever"

    def ack(self, message: MessageProxy) -> None:
        """Acknowledge ``message`` with the writes it carries (batched with other threads' acks)."""
        self.broker.acks.add(self, message, "ack")

    def nack(self, message: MessageProxy) -> None:
        """Dead-letter ``message`` with the writes it carries."""
        self.broker.acks.add(self, message, "nack")

    def acked(self, message: MessageProxy) -> None:
        """Forget an acknowledged message and wake the consumer if its window was full."""
        self.queued_message_ids.discard(message.message_id)
        self.slot_freed.set()

    def requeue(self, messages) -> None:  # type: ignore[no-untyped-def]
        """Put messages back on the queue; a lost connection is a broker connection error."""
        # Unwrapped, the redis error escapes the consumer thread's close() and ends the thread.
        try:
            super().requeue(messages)
        except REDIS_DOWN as error:
            raise ConnectionClosed(error) from None

    def _wait_for_redis(self, exc: Exception) -> None:
        """Block until Redis answers again (or the worker stops), keeping what this consumer holds."""
        log.warning("broker.redis_unreachable", queue=self.queue_name, error=str(exc))
        started, pause = time.monotonic(), 0.1
        # The caller is Dramatiq's consumer thread; its ``running`` flag drops when the worker stops.
        while getattr(threading.current_thread(), "running", True):
            try:
                self.broker.client.ping()
            except REDIS_DOWN:
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            # A restarted Redis has no scripts: load them all before this consumer's first fetch
            # loads Dramatiq's alone (a transaction that finds only some commits only part).
            try:
                load_scripts(self.broker.client)
            except REDIS_DOWN:
                continue
            log.info("broker.redis_back", queue=self.queue_name, down_s=round(time.monotonic() - started, 2))
            return

    def _dead_letter(self, exc: DecodeError) -> None:
        """Find the unreadable body among this worker's fetched ids and nack it."""
        broker = self.broker
        client = broker.client
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        try:
            redis_ids = list(client.smembers(acks))
            bodies = client.hmget(f"{broker.namespace}:{self.queue_name}.msgs", redis_ids) if redis_ids else []
            for redis_id, body in zip(redis_ids, bodies):
                if body == exc.data:
                    broker.do_nack(self.queue_name, redis_id.decode())
                    log.error("message.refused", queue=self.queue_name, redis_id=redis_id.decode(),
                              reason=refusal_reason(exc), bytes=len(exc.data), error=type(exc.error).__name__)
                    return
        except REDIS_DOWN as error:
            raise ConnectionClosed(error) from None
        # Already gone (another worker's maintenance requeued it): nothing left to move.
        log.error("message.refused", queue=self.queue_name, reason=refusal_reason(exc), bytes=len(exc.data),
                  error=type(exc.error).__name__, dead_lettered=False)


class AckBatch:
    """Group commit of acks across a process's worker threads.

    The first thread to ack becomes the sender; acks that arrive while it sends are queued
    and sent by it in its next round, so no thread waits for another's round trip and the
    sender stops once nothing is queued. A lost connection is retried until Redis answers,
    as Dramatiq retries an ack: giving up would run the message again.
    """

    def __init__(self, broker: JsonOnlyRedisBroker) -> None:
        self.broker = broker
        self._lock = threading.Lock()
        self._queued: list[tuple[WakingConsumer, MessageProxy, str]] = []
        self._sending = False

    def add(self, consumer: WakingConsumer, message: MessageProxy, command: str) -> None:
        """Queue an ``ack`` or ``nack``; send the queue unless another thread is sending it.

        The sender goes on until nothing is queued, even past a batch that failed (an error
        other than a lost connection, raised here once the queue is empty, for Dramatiq to log).
        """
        with self._lock:
            self._queued.append((consumer, message, command))
            if self._sending:
                return
            self._sending = True
        failure: BaseException | None = None
        try:
            while True:
                with self._lock:
                    batch, self._queued = self._queued, []
                    if not batch:
                        self._sending = False
                        break
                try:
                    self._send(batch)
                except Exception as exc:  # noqa: BLE001  (re-raised below, once the queue is sent)
                    failure = failure or exc
        except BaseException:  # a time limit or a shutdown signal: the next ack sends what is queued
            with self._lock:
                self._sending = False
            raise
        if failure is not None:
            raise failure

    def _send(self, acks: list[tuple[WakingConsumer, MessageProxy, str]]) -> None:
        pause, warned = 0.1, False
        try:
            while True:
                batch = Batch(self.broker.client, transaction=True)
                for consumer, message, command in acks:
                    self._ride_along(batch, message)
                    self.broker.dispatch_into(batch, command, consumer.queue_name, message.options["redis_message_id"])
                try:
                    batch.execute()
                    return
                except REDIS_DOWN as exc:
                    if not warned:
                        log.warning("broker.acks_waiting", acks=len(acks), error=str(exc))
                        warned = True
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)
        finally:
            # Also after another error (Dramatiq logs it): the slots are freed, as Dramatiq's own
            # ack frees them, and the unacked messages come back once this worker is gone.
            for consumer, message, _ in acks:
                consumer.acked(message)

    @staticmethod
    def _ride_along(batch: Batch, message: MessageProxy) -> None:
        """Queue the writes ``message`` carries; one that cannot be built is logged and left out,
        as an after-hook's error is, so the ack and the other messages' writes still go."""
        for write in getattr(message, "ride_along", ()):
            try:
                write(batch)
            except Exception as exc:  # noqa: BLE001  (logged; the message is still acked)
                log.error("broker.ride_along_failed", message_id=message.message_id, error=f"{type(exc).__name__}: {exc}")
