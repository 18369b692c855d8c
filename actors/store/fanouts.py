"""Fan-out state in Redis: members finished (done / failed), their mean progress, the backstop.

A fan-out is a group of member messages stamped with one id. Counting is atomic (Lua), so
a redelivered member is never counted twice. Dramatiq never fires a group's completion
callback once a member is dead-lettered; for that case the store keeps the finalize
message and hands it out exactly once, when the last member is final.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis

from actors.platform.broker.command_batch import register_script

__all__ = ["FANOUT_OPTION", "FanoutStore", "FanoutView"]

# The message option that makes a message a member of a fan-out.
FANOUT_OPTION = "pfd_fanout_id"

_MEMBER_FINAL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return false end
redis.call('HSET', KEYS[3], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'dead', 1) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local finished = tonumber(redis.call('HGET', KEYS[1], 'done') or '0') + tonumber(redis.call('HGET', KEYS[1], 'failed') or '0')
if finished >= total and tonumber(redis.call('HGET', KEYS[1], 'dead') or '0') > 0 then
  if redis.call('HSETNX', KEYS[1], 'backstop_sent', 1) == 1 then return redis.call('HGET', KEYS[1], 'finalize') end
end
return false
"""


@dataclass(frozen=True)
class FanoutView:
    """What a caller sees of a fan-out: counts of members and their mean progress."""

    fanout_id: str
    kind: str
    owner_id: str
    total: int
    done: int
    failed: int
    progress: float
    state: str
    result: dict[str, Any] | None
    root_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the view as JSON-safe data."""
        return asdict(self)


class FanoutStore:
    """Creates fan-outs, counts their members, reports their progress."""

    def __init__(self, redis: Redis, *, ttl_s: int, prefix: str = "pfd") -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._member_final = register_script(redis, _MEMBER_FINAL)

    def _keys(self, fanout_id: str) -> list[str]:
        base = f"{self.prefix}:fanout:{fanout_id}"
        return [base, f"{base}:final", f"{base}:progress"]

    def create(
        self, fanout_id: str, *, kind: str, owner_id: str, total: int, finalize: dict[str, Any] | None,
        root_id: str | None = None,
    ) -> None:
        """Record a new fan-out of ``total`` members, the finalize message to send, and the tree it is in."""
        head, final, progress = self._keys(fanout_id)
        pipe = self.redis.pipeline()
        pipe.hset(head, mapping={
            "kind": kind, "owner_id": owner_id, "total": total, "done": 0, "failed": 0, "dead": 0,
            "state": "running", "finalize": json.dumps(finalize) if finalize else "", "root_id": root_id or "",
        })
        for key in (head, final, progress):
            pipe.expire(key, self.ttl_s)
        pipe.execute()

    def member_progress(self, fanout_id: str, message_id: str, fraction: float) -> None:
        """Record one member's progress (0..1)."""
        self.redis.hset(self._keys(fanout_id)[2], message_id, min(max(fraction, 0.0), 1.0))

    def member_final(self, fanout_id: str, message_id: str, *, failed: bool, dead: bool) -> dict[str, Any] | None:
        """Count a member's final state once; return the finalize message if the backstop fires."""
        finalize = self._member_final(
            keys=self._keys(fanout_id), args=[message_id, "failed" if failed else "done", "1" if dead else "0"]
        )
        return json.loads(finalize) if finalize else None

    def finish(self, fanout_id: str, state: str, result: dict[str, Any] | None = None) -> None:
        """Record the fan-out's outcome (called by its finalize actor)."""
        self.redis.hset(self._keys(fanout_id)[0], mapping={"state": state, "result": json.dumps(result or {})})

    def get(self, fanout_id: str) -> FanoutView | None:
        """Return a fan-out, or None if it does not exist (or expired)."""
        head, _, progress = self._keys(fanout_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(head)
        pipe.hvals(progress)
        raw, fractions = pipe.execute()
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        total = int(h["total"])
        return FanoutView(
            fanout_id=fanout_id, kind=h["kind"], owner_id=h["owner_id"], total=total,
            done=int(h["done"]), failed=int(h["failed"]),
            progress=sum(float(f) for f in fractions) / total if total else 1.0,
            state=h["state"], result=json.loads(h["result"]) if h.get("result") else None,
            root_id=h.get("root_id") or None,
        )
