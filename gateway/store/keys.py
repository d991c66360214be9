"""Tenant key records (`gw:key:{<key id>}`), their index, and change notifications over pub/sub.

Every write goes through `change`: a MULTI/EXEC transaction on the record alone, under WATCH so the audit's
"before" is exactly what was replaced. The index, the audit log and the record are in different hash slots (one
transaction cannot span slots on a cluster), so the index entry of a new record is written before it (`all`
skips entries without a record) and a deleted record's after it, then the audit entry and the notification.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from gateway.errors import StoreError
from gateway.store.audit import AuditFields, AuditStore
from gateway.store.redis import mapped_errors, messages

CHANGES_CHANNEL = "gw:keys:changed"
_INDEX = "gw:keys"
_ATTEMPTS = 20  # optimistic retries when other writers keep changing the same key

StoredKey = dict[str, Any]
KeyChange = Callable[[StoredKey | None], tuple[StoredKey | None, AuditFields]]


class KeyStore:
    def __init__(self, redis: aioredis.Redis, audit: AuditStore) -> None:
        self._redis = redis
        self._audit = audit

    async def get(self, key_id: str) -> StoredKey | None:
        with mapped_errors(self._redis):
            raw = await self._redis.get(_key(key_id))
        return None if raw is None else json.loads(raw)

    async def change(self, key_id: str, change: KeyChange) -> tuple[StoredKey | None, StoredKey | None]:
        """Apply `change` to the current record (None: absent) and return `(before, after)`.

        `change` returns the new record (None: delete it) and the audit entry of the action; if it raises,
        nothing is written. The record, its audit entry and the notice to every gateway process (to drop its
        cached copy) are written in one transaction; a concurrent write to the same key makes it start over.
        """
        with mapped_errors(self._redis):
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(_ATTEMPTS):
                    try:
                        return await self._attempt(pipe, key_id, change)
                    except WatchError:
                        continue
        raise StoreError(f"Key {key_id} kept changing under concurrent writes; try again")

    async def _attempt(self, pipe: Pipeline, key_id: str, change: KeyChange) -> tuple[StoredKey | None, StoredKey | None]:
        await pipe.watch(_key(key_id))
        raw = await pipe.get(_key(key_id))
        before = None if raw is None else json.loads(raw)
        after, entry = change(before)
        if after is not None:
            await self._redis.zadd(_INDEX, {key_id: after["created_at"]})
        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        if after is None:
            pipe.delete(_key(key_id))
        else:
            pipe.set(_key(key_id), json.dumps(after, separators=(",", ":")))
        await pipe.execute()
        if after is None:
            await self._redis.zrem(_INDEX, key_id)
        await self._audit.append(entry)
        await self._redis.publish(CHANGES_CHANNEL, key_id)
        return before, after

    async def all(self) -> list[StoredKey]:
        """Every key record, oldest first."""
        with mapped_errors(self._redis):
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
