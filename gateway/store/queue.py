"""Durable FIFO queues of prediction ids waiting for a slot on a slot-limited upstream (Cog servers).

Each consumer (a dispatcher in one gateway process) moves the oldest id into a claimed list of its own in
one atomic step, and drops it once the upstream has accepted it. Consumers renew a lease while they live;
the ids claimed by a consumer whose lease ran out are put back at the head of the queue by `recover`, so a
queued prediction is never lost, and never taken from a consumer that is still alive.
All keys of one queue share a hash tag.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors

LEASE_MS = 10_000


class QueueStore:
    """One named queue as one consumer sees it."""

    def __init__(self, redis: aioredis.Redis, queue: str, consumer: str | None = None) -> None:
        self._redis = redis
        self._queue = queue
        self.consumer = consumer or uuid.uuid4().hex

    async def push(self, prediction_id: str) -> None:
        with mapped_errors():
            await self._redis.rpush(self._waiting, prediction_id)

    async def claim(self) -> str | None:
        """The oldest waiting id, now claimed by this consumer (whose lease this renews), or None."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self._renew(pipe)
            pipe.lmove(self._waiting, self._claimed(self.consumer), "LEFT", "RIGHT")
            with mapped_errors():
                claimed = (await pipe.execute())[-1]
        return None if claimed is None else str(claimed)

    async def push_front(self, prediction_id: str) -> None:
        """Give a claimed id back, first in line (the upstream was busy or down)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._claimed(self.consumer), 1, prediction_id)
            pipe.lpush(self._waiting, prediction_id)
            with mapped_errors():
                await pipe.execute()

    async def done(self, prediction_id: str) -> None:
        """Forget a claimed id that will not run (canceled meanwhile, or refused by the model)."""
        with mapped_errors():
            await self._redis.lrem(self._claimed(self.consumer), 1, prediction_id)

    async def accepted(self, prediction_id: str, upstream_id: str, deadline: float) -> None:
        """A server took the claimed id: it leaves the queue and runs, to finish by `deadline` (Unix time)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._claimed(self.consumer), 1, prediction_id)
            pipe.zadd(self._running, {upstream_id: deadline})
            with mapped_errors():
                await pipe.execute()

    async def finished(self, upstream_id: str) -> None:
        with mapped_errors():
            await self._redis.zrem(self._running, upstream_id)

    async def overdue(self, now: float) -> list[str]:
        """Runs past their deadline, whichever process started them."""
        with mapped_errors():
            return [str(member) for member in await self._redis.zrangebyscore(self._running, "-inf", now)]

    async def running(self) -> list[str]:
        """Every run a server took and that has not finished, whichever process started it."""
        with mapped_errors():
            return [str(member) for member in await self._redis.zrange(self._running, 0, -1)]

    async def renew(self) -> None:
        """Keep this consumer's claims its own for another lease."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self._renew(pipe)
            with mapped_errors():
                await pipe.execute()

    async def recover(self) -> int:
        """Put the ids claimed by consumers whose lease ran out back at the head of the queue, oldest first."""
        moved = 0
        with mapped_errors():
            for consumer in map(str, await self._redis.smembers(self._consumers)):
                if consumer == self.consumer or await self._redis.exists(self._alive(consumer)):
                    continue
                while await self._redis.lmove(self._claimed(consumer), self._waiting, "RIGHT", "LEFT") is not None:
                    moved += 1
                await self._redis.srem(self._consumers, consumer)
        return moved

    def _renew(self, pipe: aioredis.client.Pipeline) -> None:
        pipe.set(self._alive(self.consumer), 1, px=LEASE_MS)
        pipe.sadd(self._consumers, self.consumer)

    @property
    def _waiting(self) -> str:
        return f"gw:queue:{{{self._queue}}}"

    @property
    def _running(self) -> str:
        return f"gw:queue:{{{self._queue}}}:running"

    @property
    def _consumers(self) -> str:
        return f"gw:queue:{{{self._queue}}}:consumers"

    def _claimed(self, consumer: str) -> str:
        return f"gw:queue:{{{self._queue}}}:claimed:{consumer}"

    def _alive(self, consumer: str) -> str:
        return f"gw:queue:{{{self._queue}}}:alive:{consumer}"
