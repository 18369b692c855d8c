"""The job store: live job state in Redis, written to the database in batches.

Every state change is one Lua call that updates the job's hash, bumps its version and
marks it dirty; it rides in the broker's own round trip where it can (the enqueue, the ack)
and never touches the database. The recorder process writes dirty jobs to the ``jobs``
table in batches, final ones first; a row is only overwritten by a newer version, so
concurrent recorders and redelivered messages can never move a job backwards or write it
twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from actors.platform.broker.command_batch import Batch, register_script
from actors.store.db import Database
from actors.store.models import FINAL_JOB_STATES, Job

__all__ = [
    "COUNT_REDELIVERY_LUA", "LIVE_TTL_S", "JobStore", "JobView", "live_workers", "view_from_hash", "view_from_row",
]

# A job's hash lives this long while not final; a final one lives for the cache TTL.
LIVE_TTL_S = 7 * 24 * 3600

# Dirty jobs wait in two sorted sets, scored by when (Redis time, ms) they first became
# dirty since last written: final jobs, written first and at once, and the others, written
# once they have waited ``settle_s``. So a queued or running state superseded within that
# time (a burst of short jobs, progress reports) is never written at all.
_NOW_MS = "local now = redis.call('TIME'); local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)\n"

_RECORD = _NOW_MS + """
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'timed_out' or state == 'cancelled' then
  redis.call('ZREM', KEYS[2], KEYS[3])
  redis.call('ZADD', KEYS[5], 'NX', now_ms, KEYS[3])
  redis.call('SREM', KEYS[4], KEYS[3])
else
  redis.call('ZREM', KEYS[5], KEYS[3])
  redis.call('ZADD', KEYS[2], 'NX', now_ms, KEYS[3])
end
return {version, redis.call('HGET', KEYS[1], 'cancel')}
"""

# A start announced late must never overwrite the outcome of the attempt it announces.
_ANNOUNCE = _NOW_MS + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'timed_out' or state == 'cancelled' then
  return 0
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') or 0
if state == 'retrying' and attempts >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZADD', KEYS[2], 'NX', now_ms, KEYS[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# For the broker's sweep, which redelivers the messages of dead workers in one script: a
# function that counts one redelivery of a job whose hash is live and not final, and marks
# it dirty. The view adds the count to ``attempts`` as ``deliveries``.
COUNT_REDELIVERY_LUA = _NOW_MS + """
local function count_redelivery(job_key, dirty_key, member)
  local state = redis.call('HGET', job_key, 'state')
  if not state or state == 'succeeded' or state == 'failed' or state == 'timed_out' or state == 'cancelled' then
    return
  end
  redis.call('HINCRBY', job_key, 'redeliveries', 1)
  redis.call('HINCRBY', job_key, 'version', 1)
  redis.call('ZADD', dirty_key, 'NX', now_ms, member)
end
"""

# Starts taken back by a worker that was asked to stop; a count that expired stays gone.
_UNCOUNT_STARTS = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECR', key) end
end
return 0
"""

# A job written at version v stays dirty if it changed since (its hash is past v); a final
# one still at v gets the short cache TTL (one requeued since keeps its long one).
# ARGV: key prefix, cache TTL, then (id, version, final) triples.
_FORGET_FLUSHED = """
for i = 3, #ARGV, 3 do
  local key = ARGV[1] .. ARGV[i]
  local version = redis.call('HGET', key, 'version')
  if not version or tonumber(version) <= tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    if version and ARGV[i + 2] == '1' then redis.call('EXPIRE', key, ARGV[2]) end
  end
end
return 0
"""

_TIME_FIELDS = ("enqueued_at", "started_at", "finished_at")
_TEXT_LIMIT = 4000


@dataclass
class JobView:
    """What a caller sees of a job, from Redis while it is live, else from the database."""

    message_id: str
    actor: str = ""
    queue: str = ""
    state: str = "queued"
    progress: float = 0.0
    status: str = ""
    attempts: int = 0
    # Times a worker took the message: each attempt, and each redelivery after its worker died.
    deliveries: int = 0
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    fanout_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    worker: str | None = None
    cancel_requested: bool = False
    version: int = 0

    @property
    def final(self) -> bool:
        """True once the job will not change state again."""
        return self.state in FINAL_JOB_STATES

    def to_dict(self) -> dict[str, Any]:
        """Return the view as JSON-safe data."""
        return asdict(self)


class JobStore:
    """Records job state changes, progress and cancellation requests."""

    def __init__(self, redis: Redis, database: Database, *, cache_ttl_s: int, prefix: str = "pfd") -> None:
        self.redis = redis
        self.database = database
        self.cache_ttl_s = cache_ttl_s
        self.prefix = prefix
        self.dirty_key = f"{prefix}:jobs:dirty"
        self.final_dirty_key = f"{prefix}:jobs:dirty:final"
        self.cancels_key = f"{prefix}:jobs:cancels"
        self._record = register_script(redis, _RECORD)
        self._announce = register_script(redis, _ANNOUNCE)
        self._forget = register_script(redis, _FORGET_FLUSHED)
        self._uncount = register_script(redis, _UNCOUNT_STARTS)

    def key(self, message_id: str) -> str:
        """Return the Redis key of a job's hash."""
        return f"{self.prefix}:job:{message_id}"

    def record(self, message_id: str, fields: dict[str, Any], *, ttl_s: int = 0) -> bool:
        """Write ``fields`` to a job and mark it dirty; return whether a cancel was requested."""
        return self.record_many([(message_id, fields, ttl_s)])[0]

    def record_many(self, changes: list[tuple[str, dict[str, Any], int]]) -> list[bool]:
        """Apply several ``(message_id, fields, ttl_s)`` changes in one round trip."""
        batch = Batch(self.redis)
        for message_id, fields, ttl_s in changes:
            self.record_into(batch, message_id, fields, ttl_s=ttl_s)
        return [cancel in (b"1", "1") for _, cancel in batch.execute()]

    def record_into(self, batch: Batch, message_id: str, fields: dict[str, Any], *, ttl_s: int = 0) -> None:
        """Queue a ``record`` of ``fields`` on ``batch`` (to ride along with an ack or an enqueue)."""
        argv: list[Any] = [ttl_s]
        for name, value in fields.items():
            argv.extend((name, _encode(value)))
        keys = [self.key(message_id), self.dirty_key, message_id, self.cancels_key, self.final_dirty_key]
        batch.script(self._record, keys, argv)

    def tree_key(self, root_id: str) -> str:
        """Return the Redis key of the set of a tree's descendants (every job but the root)."""
        return f"{self.prefix}:tree:{root_id}"

    def enqueued(
        self, message_id: str, actor: str, queue: str, *,
        fanout_id: str | None = None, parent_id: str | None = None, root_id: str | None = None,
    ) -> None:
        """Record a newly sent message as ``queued``."""
        batch = Batch(self.redis)
        self.enqueued_into(batch, message_id, actor, queue, fanout_id=fanout_id, parent_id=parent_id, root_id=root_id)
        batch.execute()

    def enqueued_into(
        self, batch: Batch, message_id: str, actor: str, queue: str, *,
        fanout_id: str | None = None, parent_id: str | None = None, root_id: str | None = None,
    ) -> None:
        """Queue the record of a newly sent message as ``queued`` on ``batch``.

        A child (``parent_id`` given) joins its root's tree set, so the tree can be read
        while its jobs live in Redis only.
        """
        fields: dict[str, Any] = {
            "message_id": message_id, "actor": actor, "queue": queue, "state": "queued",
            "enqueued_at": time.time(), "progress": 0.0, "root_id": root_id or message_id,
        }
        if fanout_id:
            fields["fanout_id"] = fanout_id
        if parent_id:
            fields["parent_id"] = parent_id
            batch.command("SADD", self.tree_key(root_id or parent_id), message_id)
            batch.command("EXPIRE", self.tree_key(root_id or parent_id), LIVE_TTL_S)
        self.record_into(batch, message_id, fields, ttl_s=LIVE_TTL_S)

    @staticmethod
    def start_fields(message_id: str, actor: str, queue: str, *, attempt: int, worker: str, started_at: float) -> dict[str, Any]:
        """The fields that say an attempt is running."""
        return {"message_id": message_id, "actor": actor, "queue": queue, "state": "running",
                "started_at": started_at, "attempts": attempt, "worker": worker,
                "error_type": "", "error_message": ""}

    def started(self, message_id: str, actor: str, queue: str, *, attempt: int, worker: str) -> bool:
        """Record that a worker started the message now; return whether a cancel was requested."""
        fields = self.start_fields(message_id, actor, queue, attempt=attempt, worker=worker, started_at=time.time())
        return self.record(message_id, fields, ttl_s=LIVE_TTL_S)

    def announce_started(self, starts: list[dict[str, Any]]) -> None:
        """Record several running attempts in one round trip, never over a final state."""
        batch = Batch(self.redis)
        for fields in starts:
            argv: list[Any] = [LIVE_TTL_S, fields["attempts"]]
            for name, value in fields.items():
                argv.extend((name, _encode(value)))
            message_id = fields["message_id"]
            batch.script(self._announce, [self.key(message_id), self.dirty_key, message_id], argv)
        batch.execute()

    def count_start(self, delivery_id: str, *, ttl_s: int) -> int:
        """Count one start of a broker delivery (its Redis message id); return the starts so far."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self._starts_key(delivery_id))
        pipe.expire(self._starts_key(delivery_id), ttl_s)
        return int(pipe.execute()[0])

    def uncount_starts(self, delivery_ids: list[str]) -> None:
        """Take back one counted start of each delivery (whose worker was asked to stop)."""
        batch = Batch(self.redis)
        batch.script(self._uncount, [self._starts_key(d) for d in delivery_ids], [])
        batch.execute()

    def _starts_key(self, delivery_id: str) -> str:
        return f"{self.prefix}:starts:{delivery_id}"

    def cancel_requests(self) -> set[str]:
        """Return the ids of jobs with a pending cancel request."""
        return {member.decode() for member in self.redis.smembers(self.cancels_key)}

    def finished(self, message_id: str, state: str, **outcome: Any) -> None:
        """Record the outcome of one attempt (a final state, or ``retrying``); see ``outcome_fields``."""
        # Final jobs keep the long TTL until recorded in the database (``flush`` shortens it).
        self.record(message_id, self.outcome_fields(state, **outcome), ttl_s=LIVE_TTL_S)

    @staticmethod
    def outcome_fields(
        state: str,
        *,
        duration_ms: float,
        error: BaseException | None = None,
        error_message: str | None = None,
        result: Any = None,
        start: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The fields that record an attempt's outcome.

        ``start`` carries the attempt's start fields when its start was never announced
        (short jobs), so one round trip records the whole attempt.
        """
        fields: dict[str, Any] = dict(start or {})
        fields.update(state=state, duration_ms=round(duration_ms, 3))
        if state in FINAL_JOB_STATES:
            fields["finished_at"] = time.time()
        if state == "succeeded":
            fields["progress"] = 1.0
        if error is not None:
            fields["error_type"] = type(error).__name__
            fields["error_message"] = (error_message or str(error))[:_TEXT_LIMIT]
        if isinstance(result, dict):
            fields["result"] = result
        return fields

    def progress(
        self, message_id: str, fraction: float, status: str = "", metrics: dict[str, Any] | None = None,
        *, start: dict[str, Any] | None = None,
    ) -> bool:
        """Record progress (0..1) with a status text; return whether a cancel was requested.

        ``start`` carries the attempt's start fields if they were not recorded yet.
        """
        fields: dict[str, Any] = dict(start or {})
        fields.update(progress=min(max(float(fraction), 0.0), 1.0), status=status[:500])
        if metrics:
            fields["metrics"] = metrics
        return self.record(message_id, fields)

    def continue_versions(self, message_id: str) -> None:
        """Before a job id is sent again after Redis forgot its job (a dead letter retried after
        the cache TTL), start its hash at its database row's version, so its next rows are
        newer than that row and are written over it."""
        if self.redis.exists(self.key(message_id)):
            return
        with self.database.session() as session:
            row = session.get(Job, message_id)
            if row is not None:
                self.redis.hset(self.key(message_id), "version", row.version)
                self.redis.expire(self.key(message_id), LIVE_TTL_S)

    def cancel_requested(self, message_id: str) -> bool:
        """Return whether someone asked to cancel the job."""
        return self.redis.hget(self.key(message_id), "cancel") in (b"1", "1")

    def request_cancel(self, message_id: str) -> JobView:
        """Ask a job to stop; a queued job is skipped, a running one stops at its next check."""
        view = self.get(message_id)
        if view.final:
            return view
        self.redis.sadd(self.cancels_key, message_id)
        self.record(message_id, {"cancel": "1"})
        return self.get(message_id)

    def get(self, message_id: str) -> JobView:
        """Return a job by message id; raises ``JobNotFound`` if no record exists."""
        from actors.platform.errors import JobNotFound

        raw = self.redis.hgetall(self.key(message_id))
        if raw.get(b"actor"):
            return view_from_hash(raw)
        with self.database.session() as session:
            row = session.get(Job, message_id)
            if row is None:
                raise JobNotFound(f"no job with message id {message_id!r}")
            return view_from_row(row)

    def flush(self, limit: int = 500, *, settle_s: float = 0.0) -> int:
        """Write up to ``limit`` dirty jobs to the database; return how many were written.

        Final jobs come first, and get the short cache TTL once written; the others once
        they have been dirty for ``settle_s`` (so short-lived states coalesce), while fewer
        than ``limit`` final ones wait. Safe to run in several processes.
        """
        members = [m for m, _ in self.redis.zrange(self.final_dirty_key, 0, limit - 1, withscores=True)]
        if len(members) < limit:
            seconds, micros = self.redis.time()
            settled_ms = seconds * 1000 + micros // 1000 - int(settle_s * 1000)
            members += self.redis.zrangebyscore(self.dirty_key, "-inf", settled_ms, start=0, num=limit - len(members))
        if not members:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(self.key(member.decode()))
        snapshots = pipe.execute()
        rows = [_row_from_hash(raw) for raw in snapshots if raw.get(b"actor")]
        if rows:
            self._upsert(rows)
        flushed: list[Any] = [self.key(""), self.cache_ttl_s]
        for member, raw in zip(members, snapshots):
            final = raw.get(b"state", b"").decode() in FINAL_JOB_STATES
            flushed.extend((member, int(raw.get(b"version", 0)), "1" if final else "0"))
        batch = Batch(self.redis)
        batch.script(self._forget, [self.final_dirty_key, self.dirty_key], flushed)
        batch.execute()
        return len(rows)

    def dirty_count(self) -> int:
        """Return how many jobs wait to be written to the database."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.final_dirty_key)
        pipe.zcard(self.dirty_key)
        return sum(pipe.execute())

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        dialect = self.database.engine.dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        # One cached statement executed for many rows (executemany), not a multi-VALUES
        # statement compiled afresh for every batch.
        statement = insert(Job)
        updated = {name: statement.excluded[name] for name in rows[0] if name != "message_id"}
        statement = statement.on_conflict_do_update(
            index_elements=[Job.message_id],
            set_=updated,
            where=Job.version < statement.excluded.version,
        )
        with self.database.session() as session:
            session.connection().execute(statement, rows)

    def running_since(self, cutoff: datetime, limit: int = 500) -> list[JobView]:
        """Return jobs the database has as running (or retrying) since before ``cutoff``."""
        with self.database.session() as session:
            rows = session.scalars(
                select(Job).where(Job.state == "running", Job.started_at < cutoff).limit(limit)
            ).all()
            return [view_from_row(row) for row in rows]

    def beat(self, worker: str, queues: list[str], *, ttl_s: int) -> None:
        """Say that ``worker`` is alive and consumes ``queues``, for the next ``ttl_s`` seconds."""
        self.redis.set(f"{self.prefix}:worker:{worker}", json.dumps({"at": time.time(), "queues": queues}), ex=ttl_s)

    def live_workers(self) -> dict[str, list[str]]:
        """Return the workers alive now (by heartbeat), per queue they consume."""
        return live_workers(self.redis, self.prefix)

    def worker_alive(self, worker: str | None) -> bool:
        """Return whether ``worker`` has sent a heartbeat recently."""
        return bool(worker) and bool(self.redis.exists(f"{self.prefix}:worker:{worker}"))


def live_workers(redis: Redis, prefix: str = "pfd") -> dict[str, list[str]]:
    """Return the workers alive now (their heartbeat keys have not expired), per queue they consume."""
    keys = list(redis.scan_iter(match=f"{prefix}:worker:*", count=1000))
    by_queue: dict[str, list[str]] = {}
    for key, value in zip(keys, redis.mget(keys) if keys else []):
        if value is None:
            continue
        worker = key.decode().removeprefix(f"{prefix}:worker:")
        try:
            queues = json.loads(value).get("queues", [])
        except (ValueError, AttributeError):  # a heartbeat from before queues were named
            queues = []
        for queue in queues:
            by_queue.setdefault(queue, []).append(worker)
    return {queue: sorted(workers) for queue, workers in by_queue.items()}


def _encode(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    if value is None:
        return ""
    return str(value)


def _decode_hash(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


def view_from_hash(raw: dict[bytes, bytes]) -> JobView:
    """A job's view from its Redis hash."""
    h = _decode_hash(raw)
    attempts = int(h.get("attempts") or 0)
    return JobView(
        message_id=h["message_id"], actor=h.get("actor", ""), queue=h.get("queue", ""),
        state=h.get("state", "queued"), progress=float(h.get("progress") or 0.0),
        status=h.get("status", ""), attempts=attempts, deliveries=attempts + int(h.get("redeliveries") or 0),
        enqueued_at=_float(h.get("enqueued_at")), started_at=_float(h.get("started_at")),
        finished_at=_float(h.get("finished_at")), duration_ms=_float(h.get("duration_ms")),
        error_type=h.get("error_type") or None, error_message=h.get("error_message") or None,
        result=_json(h.get("result")), metrics=_json(h.get("metrics")) or {},
        fanout_id=h.get("fanout_id") or None, worker=h.get("worker") or None,
        parent_id=h.get("parent_id") or None, root_id=h.get("root_id") or None,
        cancel_requested=h.get("cancel") == "1", version=int(h.get("version") or 0),
    )


def _row_from_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    view = view_from_hash(raw)
    row = {
        "message_id": view.message_id, "actor": view.actor, "queue": view.queue,
        "state": view.state, "progress": view.progress, "status": view.status,
        "attempts": view.attempts, "deliveries": view.deliveries, "duration_ms": view.duration_ms,
        "error_type": view.error_type, "error_message": view.error_message,
        "result": view.result, "metrics": view.metrics or None, "fanout_id": view.fanout_id,
        "parent_id": view.parent_id, "root_id": view.root_id, "worker": view.worker, "version": view.version, "updated_at": datetime.now(UTC),
    }
    for name in _TIME_FIELDS:
        stamp = getattr(view, name)
        row[name] = datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
    return row


def view_from_row(row: Job) -> JobView:
    """A job's view from its database row."""
    def stamp(value: datetime | None) -> float | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()

    return JobView(
        message_id=row.message_id, actor=row.actor, queue=row.queue, state=row.state,
        progress=row.progress, status=row.status, attempts=row.attempts, deliveries=row.deliveries,
        enqueued_at=stamp(row.enqueued_at), started_at=stamp(row.started_at),
        finished_at=stamp(row.finished_at), duration_ms=row.duration_ms,
        error_type=row.error_type, error_message=row.error_message, result=row.result,
        metrics=row.metrics or {}, fanout_id=row.fanout_id, worker=row.worker,
        parent_id=row.parent_id, root_id=row.root_id, version=row.version,
    )
