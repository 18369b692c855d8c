"""Binds a job's identity, its place in its tree and the domain ids it works on into structlog's context."""

from __future__ import annotations

import structlog
from dramatiq.middleware import Middleware

from actors.platform.context import PARENT_OPTION, ROOT_OPTION
from actors.store.fanouts import FANOUT_OPTION

__all__ = ["LogContext"]


class LogContext(Middleware):
    """Every log line written while a message runs carries its job's identity, tree and domain ids."""

    def before_process_message(self, broker, message):  # type: ignore[no-untyped-def]
        """Bind the message's identity for the running thread."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            message_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name.removesuffix(".DQ"),
            attempt=1 + message.options.get("retries", 0),
        )
        structlog.contextvars.bind_contextvars(root_id=message.options.get(ROOT_OPTION) or message.message_id)
        parent = message.options.get(PARENT_OPTION)
        if parent:
            structlog.contextvars.bind_contextvars(parent_id=parent)
        fanout = message.options.get(FANOUT_OPTION)
        if fanout:
            structlog.contextvars.bind_contextvars(fanout_id=fanout)
        # The domain records the payload names (dataset_id, experiment_id, campaign_id, ...):
        # ops follow an experiment through every job that touches it by grepping its id.
        domain_ids = {key: value for key, value in message.kwargs.items()
                      if key.endswith("_id") and isinstance(value, str) and value}
        if domain_ids:
            structlog.contextvars.bind_contextvars(**domain_ids)

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Forget the message's identity."""
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message
