"""Durable queues of prediction ids waiting for a slot on a slot-limited upstream (Cog servers), fair between
tenants.

Each tenant has a FIFO list of its own; a ring lists the tenants that have something waiting, and a claim
takes the oldest id of the tenant at the head of the ring and moves that tenant to the back: tenants take
turns, so one tenant's backlog delays another's prediction by at most one dispatch per waiting tenant.

Each consumer (a dispatcher in one gateway process) moves what it claims into a claimed list of its own in
one atomic step, and drops it once the upstream has accepted it. Consumers renew a lease while they live;
the ids claimed by a consumer whose lease ran out are put back at the head of their tenant's list by
`recover`, so a queued prediction is never lost, and never taken from a consumer that is still alive. An id
that failed to dispatch for an unforeseen reason goes to the back, and `retry_later` counts its attempts.
All keys of one queue share a hash tag; the scripts build tenant list keys from it.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from gateway.store import scripts
from gateway.store.depths import SlotQueueDepth
from gateway.store.redis import mapped_errors

LEASE_MS = 10_000

# KEYS: ring, owners, attempts, claimed list (or the ring again when pushing anew); ARGV: tenant list prefix,
# tenant ("" = its recorded owner), id, "front" | "back", the most attempts ("" = do not count). Moves the id out
# of the claimed list and into its tenant's list in one step and returns 1; when counting this attempt reaches
# the most, leaves the id claimed and returns 0.
# Invariant: a tenant is in the ring exactly while its list is not empty.
_PUSH = """
local id = ARGV[3]
if ARGV[5] ~= '' and redis.call('HINCRBY', KEYS[3], id, 1) >= tonumber(ARGV[5]) then return 0 end
if KEYS[4] ~= KEYS[1] then redis.call('LREM', KEYS[4], 1, id) end
local tenant = ARGV[2]
if tenant == '' then tenant = redis.call('HGET', KEYS[2], id) or '' else redis.call('HSET', KEYS[2], id, tenant) end
local front = ARGV[4] == 'front'
local list = ARGV[1] .. tenant
local length = front and redis.call('LPUSH', list, id) or redis.call('RPUSH', list, id)
if front then
  redis.call('LREM', KEYS[1], 0, tenant)  -- an id given back first in line gets its tenant's turn back too
  redis.call('LPUSH', KEYS[1], tenant)
elseif length == 1 then
  redis.call('RPUSH', KEYS[1], tenant)
end
return 1
"""

# KEYS: ring, claimed list; ARGV: tenant list prefix. Returns the claimed id, or false when nothing waits.
_CLAIM = """
local tenant = redis.call('LPOP', KEYS[1])
while tenant do
  local list = ARGV[1] .. tenant
  local id = redis.call('LPOP', list)
  if id then
    if redis.call('LLEN', list) > 0 then redis.call('RPUSH', KEYS[1], tenant) end
    redis.call('RPUSH', KEYS[2], id)
    return id
  end
  tenant = redis.call('LPOP', KEYS[1])
end
return false
"""

# KEYS: ring, owners, a stopped consumer's claimed list; ARGV: tenant list prefix. Returns how many moved back.
_RECOVER = """
local moved = 0
local id = redis.call('RPOP', KEYS[3])
while id do
  local tenant = redis.call('HGET', KEYS[2], id) or ''
  if redis.call('LPUSH', ARGV[1] .. tenant, id) == 1 then redis.call('LPUSH', KEYS[1], tenant) end
  moved = moved + 1
  id = redis.call('RPOP', KEYS[3])
end
return moved
"""

# KEYS: ring, owners, running; ARGV: tenant list prefix. Returns {waiting, claimed, running}: every id is owned
# from its push until it is accepted or done, so the owned ids not in a tenant's list are claimed.
_DEPTH = """
local waiting = 0
for _, tenant in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  waiting = waiting + redis.call('LLEN', ARGV[1] .. tenant)
end
return {waiting, math.max(redis.call('HLEN', KEYS[2]) - waiting, 0), redis.call('ZCARD', KEYS[3])}
"""


class QueueStore:
    """One named queue as one consumer sees it."""

    def __init__(self, redis: aioredis.Redis, queue: str, consumer: str | None = None) -> None:
        self._redis = redis
        self._queue = queue
        self.consumer = consumer or uuid.uuid4().hex
        self._push = redis.register_script(_PUSH)
        self._claim = redis.register_script(_CLAIM)
        self._recover = redis.register_script(_RECOVER)
        self._depth = redis.register_script(_DEPTH)

    async def push(self, tenant: str, prediction_id: str) -> None:
        """Queue `prediction_id` behind the tenant's other waiting predictions."""
        keys = [self._ring, self._owners, self._attempts, self._ring]
        with mapped_errors(self._redis):
            await self._push(keys=keys, args=[self._lists, tenant, prediction_id, "back", ""])

    async def claim(self) -> str | None:
        """The next id in turn, now claimed by this consumer (whose lease this renews), or None."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self._renew(pipe)
            await self._claim(keys=[self._ring, self._claimed(self.consumer)], args=[self._lists], client=pipe)
            with mapped_errors(self._redis):
                claimed = (await scripts.execute(pipe))[-1]
        return None if claimed is None else str(claimed)

    async def push_front(self, prediction_id: str) -> None:
        """Give a claimed id back, first in its tenant's line and its tenant first in turn (the upstream was busy)."""
        await self._give_back(prediction_id, "front", None)

    async def retry_later(self, prediction_id: str, max_attempts: int) -> bool:
        """Give a claimed id back at the end of its tenant's line (dispatching it failed unexpectedly); False,
        leaving it claimed for `done`, when this was its `max_attempts`th failure."""
        return await self._give_back(prediction_id, "back", max_attempts)

    async def done(self, prediction_id: str) -> None:
        """Forget a claimed id that will not run (canceled meanwhile, refused by the model, or given up on)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._claimed(self.consumer), 1, prediction_id)
            self._forget(pipe, prediction_id)
            with mapped_errors(self._redis):
                await pipe.execute()

    async def accepted(self, prediction_id: str, upstream_id: str, deadline: float) -> None:
        """A server took the claimed id: it leaves the queue and runs, to finish by `deadline` (Unix time)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._claimed(self.consumer), 1, prediction_id)
            self._forget(pipe, prediction_id)
            pipe.zadd(self._running, {upstream_id: deadline})
            with mapped_errors(self._redis):
                await pipe.execute()

    async def finished(self, upstream_id: str) -> None:
        with mapped_errors(self._redis):
            await self._redis.zrem(self._running, upstream_id)

    async def overdue(self, now: float) -> list[str]:
        """Runs past their deadline, whichever process started them."""
        with mapped_errors(self._redis):
            return [str(member) for member in await self._redis.zrangebyscore(self._running, "-inf", now)]

    async def running(self) -> list[str]:
        """Every run a server took and that has not finished, whichever process started it."""
        with mapped_errors(self._redis):
            return [str(member) for member in await self._redis.zrange(self._running, 0, -1)]

    async def depth(self) -> SlotQueueDepth:
        """How many ids wait in the tenants' lines, are claimed by a dispatcher, and run, over all processes."""
        with mapped_errors(self._redis):
            waiting, claimed, running = await self._depth(keys=[self._ring, self._owners, self._running], args=[self._lists])
        return SlotQueueDepth(int(waiting), int(claimed), int(running))

    async def renew(self) -> None:
        """Keep this consumer's claims its own for another lease."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self._renew(pipe)
            with mapped_errors(self._redis):
                await pipe.execute()

    async def recover(self) -> int:
        """Put the ids claimed by consumers whose lease ran out back at the head of their tenants' lines, in order."""
        moved = 0
        with mapped_errors(self._redis):
            for consumer in map(str, await self._redis.smembers(self._consumers)):
                if consumer == self.consumer or await self._redis.exists(self._alive(consumer)):
                    continue
                keys = [self._ring, self._owners, self._claimed(consumer)]
                moved += int(await self._recover(keys=keys, args=[self._lists]))
                await self._redis.srem(self._consumers, consumer)
        return moved

    async def release(self) -> int:
        """Stop consuming: put what this consumer claimed back at the head of its tenants' lines at once, rather
        than when its lease runs out. Returns how many went back."""
        keys = [self._ring, self._owners, self._claimed(self.consumer)]
        with mapped_errors(self._redis):
            moved = int(await self._recover(keys=keys, args=[self._lists]))
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._alive(self.consumer))
                pipe.srem(self._consumers, self.consumer)
                await pipe.execute()
        return moved

    async def _give_back(self, prediction_id: str, end: str, max_attempts: int | None) -> bool:
        keys = [self._ring, self._owners, self._attempts, self._claimed(self.consumer)]
        args = [self._lists, "", prediction_id, end, "" if max_attempts is None else max_attempts]
        with mapped_errors(self._redis):
            return int(await self._push(keys=keys, args=args)) == 1

    def _forget(self, pipe: aioredis.client.Pipeline, prediction_id: str) -> None:
        pipe.hdel(self._owners, prediction_id)
        pipe.hdel(self._attempts, prediction_id)

    def _renew(self, pipe: aioredis.client.Pipeline) -> None:
        pipe.set(self._alive(self.consumer), 1, px=LEASE_MS)
        pipe.sadd(self._consumers, self.consumer)

    @property
    def _base(self) -> str:
        return f"gw:queue:{{{self._queue}}}"

    @property
    def _ring(self) -> str:
        return f"{self._base}:ring"

    @property
    def _lists(self) -> str:
        """The prefix of the tenants' lists: `<prefix><tenant>`."""
        return f"{self._base}:tenant:"

    @property
    def _owners(self) -> str:
        return f"{self._base}:owners"

    @property
    def _attempts(self) -> str:
        return f"{self._base}:attempts"

    @property
    def _running(self) -> str:
        return f"{self._base}:running"

    @property
    def _consumers(self) -> str:
        return f"{self._base}:consumers"

    def _claimed(self, consumer: str) -> str:
        return f"{self._base}:claimed:{consumer}"

    def _alive(self, consumer: str) -> str:
        return f"{self._base}:alive:{consumer}"
