"""Durable FIFO queues of prediction ids waiting for a slot on a slot-limited upstream (Cog servers).

`claim` moves the oldest id to a claimed list in one atomic step; `done` drops it once the upstream has
accepted it. Ids claimed by a process that died are put back at the head by `recover`, so a queued
prediction is never lost.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors


class QueueStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def push(self, queue: str, prediction_id: str) -> None:
        with mapped_errors():
            await self._redis.rpush(_waiting(queue), prediction_id)

    async def push_front(self, queue: str, prediction_id: str) -> None:
        """Give a claimed id back, first in line (the upstream was busy or down)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(_claimed(queue), 1, prediction_id)
            pipe.lpush(_waiting(queue), prediction_id)
            with mapped_errors():
                await pipe.execute()

    async def claim(self, queue: str) -> str | None:
        with mapped_errors():
            claimed = await self._redis.lmove(_waiting(queue), _claimed(queue), "LEFT", "RIGHT")
        return None if claimed is None else str(claimed)

    async def done(self, queue: str, prediction_id: str) -> None:
        with mapped_errors():
            await self._redis.lrem(_claimed(queue), 1, prediction_id)

    async def recover(self, queue: str) -> int:
        """Put every claimed-but-unfinished id back at the head of the queue, oldest first."""
        moved = 0
        with mapped_errors():
            while await self._redis.lmove(_claimed(queue), _waiting(queue), "RIGHT", "LEFT") is not None:
                moved += 1
        return moved

    async def length(self, queue: str) -> int:
        with mapped_errors():
            return int(await self._redis.llen(_waiting(queue)))


def _waiting(queue: str) -> str:
    return f"gw:queue:{{{queue}}}"


def _claimed(queue: str) -> str:
    return f"gw:queue:{{{queue}}}:claimed"
