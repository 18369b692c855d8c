"""Queue depths as the Redis broker keeps them: queued, delayed and dead-lettered messages."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from redis import Redis

__all__ = ["QueueDepth", "queue_depths"]


@dataclass(frozen=True)
class QueueDepth:
    """How many messages wait on a queue, are held by a worker (prefetched or running), wait
    for a retry or a delay, or were given up on."""

    queue: str
    queued: int
    in_flight: int
    delayed: int
    dead: int

    def to_dict(self) -> dict[str, int | str]:
        """Return the depth as JSON-safe data."""
        return asdict(self)


def queue_depths(redis: Redis, queues: tuple[str, ...], namespace: str = "dramatiq") -> list[QueueDepth]:
    """Return the depth of every queue in one round trip.

    A message's body stays in ``<queue>.msgs`` until it is acked, so the bodies not in the
    queue's list are held by workers; delayed messages count whether a worker holds them
    (waiting for their time) or not.
    """
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(f"{namespace}:{queue}")
        pipe.hlen(f"{namespace}:{queue}.msgs")
        pipe.hlen(f"{namespace}:{queue}.DQ.msgs")
        pipe.zcard(f"{namespace}:{queue}.XQ")
    counts = pipe.execute()
    depths = []
    for i, queue in enumerate(queues):
        queued, bodies, delayed, dead = counts[i * 4 : i * 4 + 4]
        depths.append(QueueDepth(queue, queued=queued, in_flight=max(bodies - queued, 0), delayed=delayed, dead=dead))
    return depths
