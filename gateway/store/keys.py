"""Tenant key records (`gw:key:{<key id>}`), their index, and change notifications over pub/sub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors, messages

CHANGES_CHANNEL = "gw:keys:changed"
_INDEX = "gw:keys"

StoredKey = dict[str, Any]


class KeyStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def get(self, key_id: str) -> StoredKey | None:
        with mapped_errors():
            raw = await self._redis.get(_key(key_id))
        return None if raw is None else json.loads(raw)

    async def put(self, record: StoredKey) -> None:
        """Save the record and tell every gateway process to drop its cached copy."""
        key_id = record["key_id"]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_key(key_id), json.dumps(record, separators=(",", ":")))
            pipe.zadd(_INDEX, {key_id: record["created_at"]})
            pipe.publish(CHANGES_CHANNEL, key_id)
            with mapped_errors():
                await pipe.execute()

    async def delete(self, key_id: str) -> bool:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_key(key_id))
            pipe.zrem(_INDEX, key_id)
            pipe.publish(CHANGES_CHANNEL, key_id)
            with mapped_errors():
                deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def all(self) -> list[StoredKey]:
        """Every key record, oldest first."""
        with mapped_errors():
            key_ids = await self._redis.zrange(_INDEX, 0, -1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id in key_ids:
                    pipe.get(_key(str(key_id)))
                rows = await pipe.execute()
        return [json.loads(raw) for raw in rows if raw is not None]

    async def changes(self) -> AsyncIterator[str]:
        """Key ids as they change; first an empty string once subscribed. Raises StoreError when the link drops."""
        async for message in messages(self._redis, channel=CHANGES_CHANNEL):
            yield "" if message is None else message[1]


def _key(key_id: str) -> str:
    return f"gw:key:{{{key_id}}}"
