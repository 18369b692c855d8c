"""Server-sent events: a job tree or the queue overview, sent again each time it changes.

Each stream polls the same reads as ``pfd follow`` and ``pfd queues`` in a worker thread
and sends an event only when what it read differs from the last one sent, with a comment
line every 15 s so proxies keep the connection open. It ends when the client leaves (or,
for a tree, once all of it is final).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from actors.platform.errors import JobNotFound

__all__ = ["overview_events", "tree_events"]

# Progress reaches Redis at once; a quarter second keeps an update well within 1 s of it.
# The overview also counts recorded jobs in the database: once a second is enough there.
_TREE_POLL_S = 0.25
_OVERVIEW_POLL_S = 1.0
_KEEPALIVE_S = 15.0


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


async def _changes(request: Request, read, name: str, *, poll_s: float, until_final: bool = False) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    last, quiet_since = None, time.monotonic()
    while not await request.is_disconnected():
        data = await run_in_threadpool(read)
        text = json.dumps(data, default=str, sort_keys=True)
        if text != last:
            last, quiet_since = text, time.monotonic()
            yield _event(name, data)
            if until_final and data.get("final"):
                yield _event("end", {"state": data.get("state")})
                return
        elif time.monotonic() - quiet_since >= _KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(poll_s)


def tree_events(request: Request, any_id: str) -> AsyncIterator[str]:
    """``tree`` events (the tree as ``/api/jobs/{id}`` gives it, plus ``final``), then ``end``."""
    from actors.platform.jobs import get_tree

    def read() -> dict[str, Any]:
        try:
            tree = get_tree(any_id)
        except JobNotFound:  # expired from Redis and not recorded: nothing more will come
            return {"final": True, "state": "unknown"}
        return {**tree.to_dict(), "final": tree.final}

    return _changes(request, read, "tree", poll_s=_TREE_POLL_S, until_final=True)


def overview_events(request: Request) -> AsyncIterator[str]:
    """``queues`` events: the queue overview (depths, live workers) and recent activity, each time they change."""
    from actors.platform.operations import queue_overview, recent_activity

    broker = request.app.state.broker
    return _changes(request, lambda: {"queues": queue_overview(broker), "activity": recent_activity()}, "queues",
                    poll_s=_OVERVIEW_POLL_S)
