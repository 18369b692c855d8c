"""Dead letters: messages Dramatiq gave up on, per queue, as Redis keeps them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.errors import DecodeError
from dramatiq.message import get_encoder
from redis import Redis

from actors.platform.broker.consumer import UNDECODABLE_REASON, refusal_reason
from config.settings import mask_secrets

__all__ = ["DeadLetter", "list_dead_letters"]

_NAMESPACE = "dramatiq"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message; ``readable`` is False for a body that is not JSON."""

    queue: str
    message_id: str
    actor: str
    failed_at: float
    kwargs: dict[str, Any]
    redis_id: str
    reason: str
    readable: bool = True
    # Dramatiq's traceback of the attempt it kept (URL passwords masked); for operators' eyes.
    traceback: str = ""


def list_dead_letters(redis: Redis, queue: str, *, limit: int = 100) -> list[DeadLetter]:
    """Return up to ``limit`` dead letters of ``queue``, newest first."""
    entries = redis.zrevrange(f"{_NAMESPACE}:{queue}.XQ", 0, limit - 1, withscores=True)
    if not entries:
        return []
    payloads = redis.hmget(f"{_NAMESPACE}:{queue}.XQ.msgs", [redis_id for redis_id, _ in entries])
    letters = []
    for (redis_id, score), payload in zip(entries, payloads):
        if payload is not None:
            letters.append(_letter(queue, redis_id.decode(), score / 1000, payload))
    return letters


def _letter(queue: str, redis_id: str, failed_at: float, payload: bytes) -> DeadLetter:
    try:
        data = get_encoder().decode(payload)
        message_id, actor = data["message_id"], data["actor_name"]
    except DecodeError as exc:  # a body the consumer refused unread: unsigned, altered, not JSON
        return _unreadable(queue, redis_id, failed_at, refusal_reason(exc))
    except (TypeError, KeyError):  # JSON, but not a message
        return _unreadable(queue, redis_id, failed_at, UNDECODABLE_REASON)
    traceback = data.get("options", {}).get("traceback") or ""
    reason = traceback.strip().splitlines()[-1] if traceback.strip() else ""
    return DeadLetter(queue=queue, message_id=message_id, actor=actor, failed_at=failed_at,
                      kwargs=data.get("kwargs", {}), redis_id=redis_id, reason=reason,
                      traceback=mask_secrets(traceback.strip()))


def _unreadable(queue: str, redis_id: str, failed_at: float, reason: str) -> DeadLetter:
    return DeadLetter(queue=queue, message_id=redis_id, actor="?", failed_at=failed_at, kwargs={},
                      redis_id=redis_id, reason=reason, readable=False)


# Options that describe a past attempt; a requeued message starts afresh without them.
_ATTEMPT_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta")


def requeue_dead_letters(broker: dramatiq.Broker, queue: str, message_ids: set[str] | None = None) -> list[str]:
    """Send dead letters of ``queue`` again (all, or those in ``message_ids``); return their ids.

    Each keeps its message id, so its job record continues (queued again, attempts reset).
    """
    from actors.platform.jobs import job_store

    redis: Redis = broker.client  # type: ignore[attr-defined]
    requeued = []
    for letter in list_dead_letters(redis, queue, limit=100_000):
        # An unreadable body is never sent again: it is only ever listed or purged.
        if not letter.readable or (message_ids is not None and letter.message_id not in message_ids):
            continue
        raw = redis.hget(f"{_NAMESPACE}:{queue}.XQ.msgs", letter.redis_id)
        if raw is None:
            continue
        data = get_encoder().decode(raw)
        options = {k: v for k, v in data.get("options", {}).items() if k not in _ATTEMPT_OPTIONS}
        message = dramatiq.Message(
            queue_name=queue, actor_name=data["actor_name"], args=tuple(data.get("args", ())),
            kwargs=data.get("kwargs", {}), options=options, message_id=data["message_id"],
            message_timestamp=data["message_timestamp"],
        )
        job_store().continue_versions(message.message_id)
        broker.enqueue(message)
        _remove(redis, queue, letter.redis_id)
        requeued.append(letter.message_id)
    return requeued


def purge_dead_letters(redis: Redis, queue: str) -> int:
    """Delete every dead letter of ``queue``; return how many there were."""
    count = int(redis.zcard(f"{_NAMESPACE}:{queue}.XQ"))
    redis.delete(f"{_NAMESPACE}:{queue}.XQ", f"{_NAMESPACE}:{queue}.XQ.msgs")
    return count


def _remove(redis: Redis, queue: str, redis_id: str) -> None:
    pipe = redis.pipeline()
    pipe.zrem(f"{_NAMESPACE}:{queue}.XQ", redis_id)
    pipe.hdel(f"{_NAMESPACE}:{queue}.XQ.msgs", redis_id)
    pipe.execute()
