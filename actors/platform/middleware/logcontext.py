"""Binds message_id, actor, queue, attempt and fan-out id into structlog's context."""

from __future__ import annotations

import structlog
from dramatiq.middleware import Middleware

from actors.store.fanouts import FANOUT_OPTION

__all__ = ["LogContext"]


class LogContext(Middleware):
    """Every log line written while a message runs carries the message's identity."""

    def before_process_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Bind the message's identity for the running thread."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            message_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name.removesuffix(".DQ"),
            attempt=1 + message.options.get("retries", 0),
        )
        fanout = message.options.get(FANOUT_OPTION)
        if fanout:
            structlog.contextvars.bind_contextvars(fanout_id=fanout)

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Forget the message's identity."""
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message
