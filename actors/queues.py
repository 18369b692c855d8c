"""Queue depths as the Redis broker keeps them: queued, delayed and dead-lettered messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from redis import Redis

__all__ = ["QueueDepth", "queue_depths"]


@dataclass(frozen=True)
class QueueDepth:
    """How many messages wait on a queue, wait for a retry, or were given up on."""

    queue: str
    queued: int
    delayed: int
    dead: int

    def to_dict(self) -> dict[str, int | str]:
        """Return the depth as JSON-safe data."""
        return asdict(self)


def queue_depths(redis: Redis, queues: tuple[str, ...], namespace: str = "dramatiq") -> list[QueueDepth]:
    """Return the depth of every queue in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(f"{namespace}:{queue}")
        pipe.llen(f"{namespace}:{queue}.DQ")
        pipe.zcard(f"{namespace}:{queue}.XQ")
    counts = pipe.execute()
    return [
        QueueDepth(queue, *counts[i * 3 : i * 3 + 3]) for i, queue in enumerate(queues)
    ]
