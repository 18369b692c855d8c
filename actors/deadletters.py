"""Dead letters: messages Dramatiq gave up on, per queue, as Redis keeps them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis import Redis

__all__ = ["DeadLetter", "dead_letter_counts", "list_dead_letters"]

_NAMESPACE = "dramatiq"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message."""

    queue: str
    message_id: str
    actor: str
    failed_at: float
    kwargs: dict[str, Any]
    redis_id: str


def list_dead_letters(redis: Redis, queue: str, *, limit: int = 100) -> list[DeadLetter]:
    """Return up to ``limit`` dead letters of ``queue``, newest first."""
    entries = redis.zrevrange(f"{_NAMESPACE}:{queue}.XQ", 0, limit - 1, withscores=True)
    if not entries:
        return []
    payloads = redis.hmget(f"{_NAMESPACE}:{queue}.XQ.msgs", [redis_id for redis_id, _ in entries])
    letters = []
    for (redis_id, score), payload in zip(entries, payloads):
        if payload is None:
            continue
        data = json.loads(payload)
        letters.append(
            DeadLetter(
                queue=queue, message_id=data["message_id"], actor=data["actor_name"],
                failed_at=score / 1000, kwargs=data.get("kwargs", {}), redis_id=redis_id.decode(),
            )
        )
    return letters


def dead_letter_counts(redis: Redis, queues: tuple[str, ...]) -> dict[str, int]:
    """Return how many dead letters each queue holds."""
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.zcard(f"{_NAMESPACE}:{queue}.XQ")
    return dict(zip(queues, pipe.execute()))
