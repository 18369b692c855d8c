"""Refuses to boot a worker that Redis turns away: wrong credentials, missing ACL permissions,
an untrusted or failed TLS handshake.

Without it such a worker would start and wait, as for an outage, for a Redis that is up and
will never let it in. A Redis that is down is an outage: the worker boots and its consumers
wait for it, as ever.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from dramatiq.middleware import Middleware, MiddlewareError
from redis import Redis
from redis.exceptions import NoPermissionError

from actors.platform.broker.connection import redis_setup_fault
from actors.platform.broker.consumer import REDIS_DOWN

__all__ = ["RedisGuard"]


class RedisGuard(Middleware):
    """Pings Redis once per worker process, before any other middleware's boot hook runs."""

    def __init__(self, *, client: Callable[[], Redis]) -> None:
        self._client = client

    def before_worker_boot(self, broker, worker):  # type: ignore[no-untyped-def]
        """Stop the boot with the reason when Redis refuses this process's setup."""
        try:
            self._client().ping()
        except (*REDIS_DOWN, NoPermissionError) as exc:
            fault = redis_setup_fault(exc)
            if fault is None:
                return  # down, not refusing: the consumers wait for it
            structlog.get_logger("pfd.worker").error("worker.refused", reason=fault)
            # Dramatiq logs and ignores other errors raised by boot hooks; this one stops the boot.
            raise MiddlewareError(fault) from None
