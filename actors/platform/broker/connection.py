"""The process-wide Redis connection that the broker, job store and fan-out store share."""

from __future__ import annotations

import functools
import socket
import ssl
from pathlib import Path

from redis import AuthenticationError, Redis
from redis.exceptions import NoPermissionError

__all__ = ["redis_client", "redis_setup_fault"]


# Idle seconds before the first probe, seconds between probes, probes lost before the
# connection is dropped (Linux names; elsewhere the system's defaults apply).
_KEEPALIVE = {getattr(socket, name): value for name, value in
              (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)) if hasattr(socket, name)}


@functools.lru_cache(maxsize=4)
def redis_client(url: str, ca_file: Path | None = None) -> Redis:
    """Return the process-wide Redis client for ``url``; a ``rediss://`` URL verifies the
    server's certificate (and host name) against ``ca_file``, or the system's CAs."""
    # redis-py 8 reads with a 5 s timeout unless told otherwise, which breaks blocking reads
    # longer than that (a result awaited with get_result(block=True, timeout=30_000)).
    # Reads wait as long as the command asks; TCP keepalive notices a server that went away
    # without closing the connection (a host down, a partition) within about 30 s, instead
    # of the system's default of two hours during which acks and wake-ups would hang.
    tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
           **({"ssl_ca_certs": str(ca_file)} if ca_file else {})} if url.startswith("rediss://") else {}
    return Redis.from_url(url, socket_timeout=None, socket_connect_timeout=5, socket_keepalive=True,
                          socket_keepalive_options=_KEEPALIVE, **tls)


def redis_setup_fault(exc: BaseException) -> str | None:
    """Why ``exc`` is a fault of this process's setup that waiting will not cure (refused
    credentials or permissions, a certificate its CA does not sign), or None for an outage.
    Other TLS errors (a handshake cut short by a restarting server) count as outages.

    redis-py raises both as connection errors; telling them apart lets a worker or producer
    stop with one clear error instead of waiting for a Redis that is up but refuses it.
    """
    if isinstance(exc, AuthenticationError):
        return f"Redis refused the user and password of PFD_REDIS_URL: {exc}"
    if isinstance(exc, NoPermissionError):
        return f"the Redis user of PFD_REDIS_URL lacks a permission the workers need: {exc}"
    cause: BaseException | None = exc
    for _ in range(8):  # redis-py wraps the ssl error a level or two down
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"Redis's TLS certificate is not trusted (PFD_REDIS_CA_FILE names the CA that signs it): "
                    f"{cause.verify_message or cause}")
        cause = cause.__cause__ or cause.__context__
    return None
