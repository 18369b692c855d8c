"""Counts a fan-out member that returned before Dramatiq's ``GroupCallbacks`` fires its group's callback.

Dramatiq runs after-hooks in reverse middleware order. ``GroupCallbacks`` fires a group's
completion callback in the last member's ``after_process_message``, and ``JobTracking``
sits before ``Retries`` (its hook must see Retries' decision), so it runs later: a
callback that read the fan-out's counts could find its last member missing. This
middleware sits after ``GroupCallbacks``, so its hook runs first. It counts the members
that returned, the only ones that fire the callback and whose outcome needs no retry
decision; ``JobTracking`` counts the others once Retries has decided.
"""

from __future__ import annotations

import structlog
from dramatiq import Message
from dramatiq.middleware import Middleware

from actors.platform.context import current_job
from actors.store.fanouts import FANOUT_OPTION
from config.settings import mask_secrets

__all__ = ["FanoutMembers", "count_member"]

log = structlog.get_logger("pfd.jobs")


def count_member(broker, message, *, failed: bool, dead: bool) -> None:  # type: ignore[no-untyped-def]
    """Count a fan-out member once (a repeat is a no-op); send the finalize if Dramatiq's never will."""
    from actors.platform.fanout import fanout_store

    try:
        finalize = fanout_store().member_final(message.options[FANOUT_OPTION], message.message_id, failed=failed,
                                               dead=dead)
        if finalize is not None:
            broker.enqueue(Message(**finalize))
            log.warning("fanout.backstop_finalize", fanout_id=message.options[FANOUT_OPTION])
    except Exception as exc:  # an after-hook must never raise
        log.error("fanout.count_failed", error=mask_secrets(str(exc)))


class FanoutMembers(Middleware):
    """Counts each fan-out member that returned, before its group's callback can fire."""

    def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
        """Count a member that returned: ``succeeded``, or failed/cancelled through its job context."""
        if exception is None and message.options.get(FANOUT_OPTION):
            outcome = current_job().outcome or "succeeded"
            count_member(broker, message, failed=outcome != "succeeded", dead=False)
