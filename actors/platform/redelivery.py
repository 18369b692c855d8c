"""The sweep: a dead worker's messages go back on their queues, counted, and waiting consumers wake.

Dramatiq's Redis broker redelivers a dead worker's messages from its dispatch script, on a
random chance per command (``maintenance_chance``) and only for the queue of that command:
20 s to 108 s after a kill were measured here with a 15 s heartbeat timeout, and nothing
counted the redelivery. One ``sweep`` does all of it in one Lua call, for every queue: each
worker whose heartbeat is older than the heartbeat timeout loses its unacknowledged
messages back to their queues, each one's job record counts a redelivery (``deliveries``),
each queue that got one has its idle consumers woken, and dead letters past their TTL are
deleted (the other half of Dramatiq's maintenance, which this broker no longer runs). The
``Sweeper`` middleware runs it in every worker process once a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.common import current_millis

from actors.platform.broker.command_batch import Batch, register_script
from actors.platform.broker.redis_broker import WAKE_TOKENS, JsonOnlyRedisBroker
from actors.store.jobs import COUNT_REDELIVERY_LUA, JobStore

__all__ = ["Redelivery", "Swept"]

# KEYS: broker namespace, job key prefix, dirty jobs. ARGV: the clock heartbeats are written
# with (the workers', in ms), heartbeat timeout (ms), dead-letter TTL (ms), wake tokens a
# queue keeps, then the queues whose dead letters expire. Keys as Dramatiq's dispatch.lua
# names them; a queue's wake list as ``JsonOnlyRedisBroker.wake_key`` does.
_SWEEP = COUNT_REDELIVERY_LUA + """
local namespace, job_prefix, dirty = KEYS[1], KEYS[2], KEYS[3]
local clock_ms, wake_tokens = tonumber(ARGV[1]), tonumber(ARGV[4])
local heartbeats = namespace .. ':__heartbeats__'
local dead = redis.call('ZRANGEBYSCORE', heartbeats, 0, clock_ms - tonumber(ARGV[2]))
local redelivered, per_queue = 0, {}
for _, worker in ipairs(dead) do
  local acks_prefix = namespace .. ':__acks__.' .. worker .. '.'
  -- KEYS, as Dramatiq's maintenance does, but once per dead worker: it is forgotten below.
  for _, acks in ipairs(redis.call('KEYS', acks_prefix .. '*')) do
    local queue = string.sub(acks, #acks_prefix + 1)
    local queue_key = namespace .. ':' .. queue
    for _, redis_id in ipairs(redis.call('SMEMBERS', acks)) do
      local body = redis.call('HGET', queue_key .. '.msgs', redis_id)
      if body then
        redis.call('RPUSH', queue_key, redis_id)
        redelivered = redelivered + 1
        per_queue[queue] = (per_queue[queue] or 0) + 1
        -- A body that is not JSON is still requeued (the consumer dead-letters it unread). A
        -- signed body (pfd1.<key id>.<HMAC>.<JSON>, actors.platform.broker.signing) is counted
        -- by the id its JSON names; its signature is the consumer's to check.
        local json = string.match(body, '^pfd1%.[^.]*%.[^.]*%.(.*)$') or body
        local ok, message = pcall(cjson.decode, json)
        if ok and type(message) == 'table' and type(message.message_id) == 'string' then
          count_redelivery(job_prefix .. message.message_id, dirty, message.message_id)
        end
      end
    end
    redis.call('DEL', acks)
  end
  redis.call('ZREM', heartbeats, worker)
end
for queue, count in pairs(per_queue) do
  local wake = namespace .. ':' .. queue .. '.wake'
  for _ = 1, math.min(count, wake_tokens) do redis.call('LPUSH', wake, 1) end
  redis.call('LTRIM', wake, 0, wake_tokens - 1)
end
local expired = 0
for i = 5, #ARGV do
  local xq = namespace .. ':' .. ARGV[i] .. '.XQ'
  local ids = redis.call('ZRANGEBYSCORE', xq, 0, clock_ms - tonumber(ARGV[3]), 'LIMIT', 0, 500)
  if #ids > 0 then
    redis.call('ZREM', xq, unpack(ids))
    redis.call('HDEL', xq .. '.msgs', unpack(ids))
    expired = expired + #ids
  end
end
return {#dead, redelivered, expired}
"""


@dataclass(frozen=True)
class Swept:
    """What one sweep did."""

    dead_workers: int
    redelivered: int
    expired_dead_letters: int


class Redelivery:
    """Sweeps the broker's dead workers: requeue, count, wake, and expire old dead letters."""

    def __init__(self, broker: JsonOnlyRedisBroker, store: JobStore) -> None:
        self.broker = broker
        self.store = store
        self._script = register_script(broker.client, _SWEEP)

    def sweep(self) -> Swept:
        """Redeliver the messages of every worker silent for longer than the heartbeat timeout."""
        broker = self.broker
        # Dead letters live under their queue's own name, never a delay queue's.
        queues = sorted({q.removesuffix(".DQ") for q in broker.get_declared_queues()})
        batch = Batch(broker.client)
        batch.script(self._script, [broker.namespace, self.store.key(""), self.store.dirty_key],
                     [current_millis(), broker.heartbeat_timeout, broker.dead_message_ttl, WAKE_TOKENS, *queues])
        dead, redelivered, expired = batch.execute()[0]
        return Swept(dead_workers=int(dead), redelivered=int(redelivered), expired_dead_letters=int(expired))
