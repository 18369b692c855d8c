"""A private queue for the notification tests' own worker.

The session's shared workers include a notifications worker without SMTP or webhook
settings; messages on this queue reach only the worker these tests start with theirs.
"""

from __future__ import annotations

import dramatiq

QUEUE = "notifications_tests"

dramatiq.get_broker().declare_queue(QUEUE)


def enqueue(message: dramatiq.Message) -> dramatiq.Message:
    """Enqueue ``message`` on the private queue (same id, actor and arguments)."""
    return dramatiq.get_broker().enqueue(message.copy(queue_name=QUEUE))
