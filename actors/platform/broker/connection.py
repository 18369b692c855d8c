"""The process-wide Redis connection that the broker, job store and fan-out store share."""

from __future__ import annotations

import functools
import socket

from redis import Redis

__all__ = ["redis_client"]


# Idle seconds before the first probe, seconds between probes, probes lost before the
# connection is dropped (Linux names; elsewhere the system's defaults apply).
_KEEPALIVE = {getattr(socket, name): value for name, value in
              (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)) if hasattr(socket, name)}


@functools.lru_cache(maxsize=4)
def redis_client(url: str) -> Redis:
    """Return the process-wide Redis client for ``url``."""
    # redis-py 8 reads with a 5 s timeout unless told otherwise, which breaks blocking reads
    # longer than that (a result awaited with get_result(block=True, timeout=30_000)).
    # Reads wait as long as the command asks; TCP keepalive notices a server that went away
    # without closing the connection (a host down, a partition) within about 30 s, instead
    # of the system's default of two hours during which acks and wake-ups would hang.
    return Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5, socket_keepalive=True,
                          socket_keepalive_options=_KEEPALIVE)
