"""Durable schedules of background work shared by every gateway process: a sorted set of ids scored by the
time (Unix ms) each is next due.

A process takes due ids with `claim`, which in the same atomic step moves each one a lease into the future: no
other process sees it while the lease runs, and if the claimer dies the id simply falls due again when the
lease ends, for whichever process looks next. The claimer ends its turn with `reschedule` (due again later)
or `remove` (nothing left to do). One key per schedule (`gw:schedule:{<name>}`), so each script touches one
Redis Cluster slot.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway.store.depths import ScheduleDepth
from gateway.store.redis import mapped_errors

# KEYS[1] schedule; ARGV: now ms, lease ms, most ids to take. Returns the ids taken (each now due at now + lease).
_CLAIM = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local leased = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], leased, id)
end
return due
"""

# KEYS[1] schedule; ARGV: now ms, then pairs of id and the lease (due time) the caller's claim gave it. Makes each id
# due now that still carries that lease (not rescheduled, removed or claimed again since); returns how many.
_RELEASE = """
local released = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    released = released + 1
  end
end
return released
"""


class Schedule:
    """One named schedule."""

    def __init__(self, redis: aioredis.Redis, name: str) -> None:
        self._redis = redis
        self.key = f"gw:schedule:{{{name}}}"
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def add_to(self, pipe: aioredis.client.Pipeline, item_id: str, due_ms: int) -> None:
        """Queue, on `pipe`, scheduling `item_id` at `due_ms` (so that it is written with what it follows up on)."""
        pipe.zadd(self.key, {item_id: due_ms})

    async def add(self, item_id: str, due_ms: int) -> None:
        with mapped_errors(self._redis):
            await self._redis.zadd(self.key, {item_id: due_ms})

    async def claim(self, now_ms: int, lease_ms: int, count: int) -> list[str]:
        """Up to `count` ids due by `now_ms`, each leased to the caller for `lease_ms`."""
        with mapped_errors(self._redis):
            taken = await self._claim(keys=[self.key], args=[now_ms, lease_ms, count])
        return [str(item) for item in taken]

    async def release(self, leases: dict[str, int], now_ms: int) -> int:
        """Give back ids this caller claimed (id -> the due time its claim gave it): each is due at `now_ms`, for
        any process, unless its turn ended meanwhile. Returns how many were given back."""
        if not leases:
            return 0
        args = [now_ms, *(value for pair in leases.items() for value in pair)]
        with mapped_errors(self._redis):
            return int(await self._release(keys=[self.key], args=args))

    async def reschedule(self, item_id: str, due_ms: int) -> None:
        """Due again at `due_ms`, unless it was removed meanwhile."""
        with mapped_errors(self._redis):
            await self._redis.zadd(self.key, {item_id: due_ms}, xx=True)

    async def remove(self, item_id: str) -> None:
        with mapped_errors(self._redis):
            await self._redis.zrem(self.key, item_id)

    async def due_at(self, item_id: str) -> int | None:
        """When `item_id` is next due (Unix ms), or None when it is not scheduled."""
        with mapped_errors(self._redis):
            score = await self._redis.zscore(self.key, item_id)
        return None if score is None else int(score)

    async def size(self) -> int:
        with mapped_errors(self._redis):
            return int(await self._redis.zcard(self.key))

    async def depth(self, now_ms: int) -> ScheduleDepth:
        """How many ids are scheduled, and how many of them are due by `now_ms` but claimed by no process."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.key)
            pipe.zcount(self.key, "-inf", now_ms)
            with mapped_errors(self._redis):
                scheduled, overdue = await pipe.execute()
        return ScheduleDepth(int(scheduled), int(overdue))
