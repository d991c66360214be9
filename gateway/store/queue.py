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
All keys of one queue share a hash tag, and each script is given every key it touches.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from gateway.store.depths import SlotQueueDepth
from gateway.store.redis import mapped_errors

LEASE_MS = 10_000

# Scripts touch only the keys they are given (a cluster requires it): the caller names the tenant's list, having
# read the tenant from the ring or the owners first. Invariant: a tenant is in the ring exactly while its list is
# not empty.

# KEYS: ring, owners, attempts, claimed list (or the ring again when pushing anew), the tenant's list; ARGV:
# tenant, id, "front" | "back", the most attempts ("" = do not count). Moves the id out of the claimed list and
# into its tenant's list in one step and returns 1; when counting this attempt reaches the most, leaves the id
# claimed and returns 0.
_PUSH = """
local tenant, id = ARGV[1], ARGV[2]
if ARGV[4] ~= '' and redis.call('HINCRBY', KEYS[3], id, 1) >= tonumber(ARGV[4]) then return 0 end
if KEYS[4] ~= KEYS[1] then redis.call('LREM', KEYS[4], 1, id) end
redis.call('HSET', KEYS[2], id, tenant)
local front = ARGV[3] == 'front'
local length = front and redis.call('LPUSH', KEYS[5], id) or redis.call('RPUSH', KEYS[5], id)
if front then
  redis.call('LREM', KEYS[1], 0, tenant)  -- an id given back first in line gets its tenant's turn back too
  redis.call('LPUSH', KEYS[1], tenant)
elseif length == 1 then
  redis.call('RPUSH', KEYS[1], tenant)
end
return 1
"""

# KEYS: ring, claimed list, the list of the tenant the caller saw first in the ring; ARGV: that tenant. Returns
# the claimed id, or false when that tenant is no longer first in turn (the caller looks again).
_CLAIM = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return false end
redis.call('LPOP', KEYS[1])
local id = redis.call('LPOP', KEYS[3])
if not id then return false end
if redis.call('LLEN', KEYS[3]) > 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('RPUSH', KEYS[2], id)
return id
"""

# KEYS: ring, a stopped consumer's claimed list, the id's tenant's list; ARGV: id, tenant. Moves the id back to
# the head of its tenant's list (and the tenant into the ring); 0 if it was no longer claimed.
_RECOVER = """
if redis.call('LREM', KEYS[2], -1, ARGV[1]) == 0 then return 0 end
if redis.call('LPUSH', KEYS[3], ARGV[1]) == 1 then redis.call('LPUSH', KEYS[1], ARGV[2]) end
return 1
"""

_CLAIM_LOOKS = 100  # a claim gives up (None) after this many races with other consumers for the ring's head


class QueueStore:
    """One named queue as one consumer sees it."""

    def __init__(self, redis: aioredis.Redis, queue: str, consumer: str | None = None) -> None:
        self._redis = redis
        self._queue = queue
        self.consumer = consumer or uuid.uuid4().hex
        self._push = redis.register_script(_PUSH)
        self._claim = redis.register_script(_CLAIM)
        self._recover = redis.register_script(_RECOVER)

    async def push(self, tenant: str, prediction_id: str) -> None:
        """Queue `prediction_id` behind the tenant's other waiting predictions."""
        keys = [self._ring, self._owners, self._attempts, self._ring, self._list(tenant)]
        with mapped_errors(self._redis):
            await self._push(keys=keys, args=[tenant, prediction_id, "back", ""])

    async def claim(self) -> str | None:
        """The next id in turn, now claimed by this consumer (whose lease this renews), or None."""
        await self.renew()
        with mapped_errors(self._redis):
            for _ in range(_CLAIM_LOOKS):
                tenant = await self._redis.lindex(self._ring, 0)
                if tenant is None:
                    return None
                keys = [self._ring, self._claimed(self.consumer), self._list(str(tenant))]
                claimed = await self._claim(keys=keys, args=[str(tenant)])
                if claimed is not None:
                    return str(claimed)
        return None

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
        """How many ids wait in the tenants' lines, are claimed by a dispatcher, and run, over all processes (read
        in two steps: a gauge, not a snapshot). Every id is owned from its push until it is accepted or done, so
        the owned ids not in a tenant's list are claimed."""
        with mapped_errors(self._redis):
            tenants = await self._redis.lrange(self._ring, 0, -1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.llen(self._list(str(tenant)))
                pipe.hlen(self._owners)
                pipe.zcard(self._running)
                *lengths, owned, running = await pipe.execute()
        waiting = sum(int(length) for length in lengths)
        return SlotQueueDepth(waiting, max(int(owned) - waiting, 0), int(running))

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
                moved += await self._requeue(consumer)
                await self._redis.srem(self._consumers, consumer)
        return moved

    async def release(self) -> int:
        """Stop consuming: put what this consumer claimed back at the head of its tenants' lines at once, rather
        than when its lease runs out. Returns how many went back."""
        with mapped_errors(self._redis):
            moved = await self._requeue(self.consumer)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._alive(self.consumer))
                pipe.srem(self._consumers, self.consumer)
                await pipe.execute()
        return moved

    async def _requeue(self, consumer: str) -> int:
        """Move `consumer`'s claimed ids back, last claimed first, so that they come out in the order claimed."""
        moved, claimed = 0, self._claimed(consumer)
        for prediction_id in reversed(await self._redis.lrange(claimed, 0, -1)):
            tenant = str(await self._redis.hget(self._owners, prediction_id) or "")
            keys = [self._ring, claimed, self._list(tenant)]
            moved += int(await self._recover(keys=keys, args=[prediction_id, tenant]))
        return moved

    async def _give_back(self, prediction_id: str, end: str, max_attempts: int | None) -> bool:
        with mapped_errors(self._redis):
            tenant = str(await self._redis.hget(self._owners, prediction_id) or "")
            keys = [self._ring, self._owners, self._attempts, self._claimed(self.consumer), self._list(tenant)]
            args = [tenant, prediction_id, end, "" if max_attempts is None else max_attempts]
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

    def _list(self, tenant: str) -> str:
        return f"{self._base}:tenant:{tenant}"

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
