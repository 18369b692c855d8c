"""Fan-out: a Dramatiq group of member messages with a completion callback, and its record.

Every member carries the fan-out id in its options (``pfd_fanout_id``); the tracking
middleware counts members as they finish and keeps their mean progress. A member that
fails on its own domain error records ``failed`` and returns normally (``job.fail``), so
the group's callback still fires; see ``actors.store.fanouts`` for the dead-letter case.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

import dramatiq

from actors.platform.broker.connection import redis_client
from actors.platform.context import ROOT_OPTION, lineage_options
from actors.store.fanouts import FANOUT_OPTION, FanoutStore, FanoutView
from config.settings import get_settings

__all__ = ["FANOUT_OPTION", "fan_out", "fanout_store", "get_fanout"]


@functools.cache
def fanout_store() -> FanoutStore:
    """Return this process's fan-out store."""
    settings = get_settings()
    return FanoutStore(redis_client(settings.redis_url, settings.redis_ca_file),
                       ttl_s=max(settings.job_cache_ttl_s, 7 * 24 * 3600))


def fan_out(
    members: Sequence[dramatiq.Message],
    *,
    kind: str,
    owner_id: str,
    finalize: dramatiq.Message | None = None,
    fanout_id: str | None = None,
) -> str:
    """Send ``members`` as one group, with ``finalize`` as its completion callback.

    ``finalize`` receives ``fanout_id`` as a keyword when its schema accepts one. Returns
    the fan-out id, which callers use to read counts and progress (``get_fanout``).
    """
    if not members:
        raise ValueError("a fan-out needs at least one member")
    fanout_id = fanout_id or str(uuid.uuid4())
    stamped = [m.copy(options={FANOUT_OPTION: fanout_id, **lineage_options(m.options)}) for m in members]
    if finalize is not None:
        # Enqueued later, by the last member's worker: a child of the launcher, not of that member.
        finalize = finalize.copy(options=lineage_options(finalize.options))
    fanout_store().create(
        fanout_id, kind=kind, owner_id=owner_id, total=len(stamped),
        finalize=finalize.asdict() if finalize is not None else None,
        root_id=stamped[0].options.get(ROOT_OPTION),
    )
    group = dramatiq.group(stamped)
    if finalize is not None:
        group.add_completion_callback(finalize)
    group.run()
    return fanout_id


def get_fanout(fanout_id: str) -> FanoutView | None:
    """Return a fan-out's counts, mean progress and state, or None if unknown."""
    return fanout_store().get(fanout_id)
