"""File metadata records (`gw:file:{<id>}`, expiring with the file), the per-tenant index and the sweep queue.

`gw:tenant:{<tenant>}:files` orders a tenant's files by creation: every member has score 0 and reads
`<created ms, 15 digits>:<id>`, so lexicographic ranges give exact keyset pages. `gw:files:expiring` scores file
ids by the time their blob may be deleted; an entry is added before the blob is written and removed only after
the blob is gone, so no blob outlives its record unnoticed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.store import timeline
from gateway.store.redis import mapped_errors
from gateway.store.timeline import IndexEntry

_EXPIRING = "gw:files:expiring"


@dataclass(frozen=True)
class StoredFile:
    """One uploaded file's metadata; the bytes live in file storage under the file's id."""

    id: str
    tenant: str
    name: str
    content_type: str
    size: int
    sha256: str
    md5: str
    metadata: dict[str, Any]
    created_ms: int
    expires_ms: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> StoredFile:
        return cls(**json.loads(raw))


class FileStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def reserve(self, file_id: str, expires_ms: int) -> None:
        """Queue the blob for deletion at `expires_ms` before it is written (a crash then leaks nothing)."""
        with mapped_errors(self._redis):
            await self._redis.zadd(_EXPIRING, {file_id: expires_ms})

    async def insert(self, file: StoredFile) -> None:
        """Write the record (expiring with the file) and index it, trimming index entries older than its lifetime."""
        ttl_ms = max(file.expires_ms - int(time.time() * 1000), 1)
        index = _index_key(file.tenant)
        oldest_kept = file.created_ms - (file.expires_ms - file.created_ms)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_key(file.id), file.to_json(), px=ttl_ms)
            timeline.add(pipe, index, IndexEntry(file.id, file.created_ms), oldest_kept)
            pipe.pexpire(index, ttl_ms)
            with mapped_errors(self._redis):
                await pipe.execute()

    async def get(self, file_id: str) -> StoredFile | None:
        with mapped_errors(self._redis):
            raw = await self._redis.get(_key(file_id))
        return None if raw is None else StoredFile.from_json(str(raw))

    async def delete(self, file: StoredFile) -> bool:
        """Remove the record and its index entry and queue its blob for deletion now. False if already gone."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_key(file.id))
            pipe.zrem(_index_key(file.tenant), timeline.member(IndexEntry(file.id, file.created_ms)))
            pipe.zadd(_EXPIRING, {file.id: 0})
            with mapped_errors(self._redis):
                deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def older(self, tenant: str, edge: IndexEntry | None, count: int) -> list[IndexEntry]:
        """Up to `count` index entries older than `edge` (or the newest), newest first."""
        return await timeline.older(self._redis, _index_key(tenant), edge, count)

    async def newer(self, tenant: str, edge: IndexEntry, count: int) -> list[IndexEntry]:
        """Up to `count` index entries newer than `edge`, oldest first."""
        return await timeline.newer(self._redis, _index_key(tenant), edge, count)

    async def load(self, entries: Sequence[IndexEntry]) -> list[StoredFile]:
        """The records behind index entries, in order, skipping those that have expired or were deleted."""
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:  # not MGET: the keys are in different slots
            for entry in entries:
                pipe.get(_key(entry.id))
            with mapped_errors(self._redis):
                rows = await pipe.execute()
        return [StoredFile.from_json(str(raw)) for raw in rows if raw is not None]

    async def expired(self, now_ms: int, count: int) -> list[str]:
        """Ids of up to `count` files whose blobs are due for deletion."""
        with mapped_errors(self._redis):
            return [str(m) for m in await self._redis.zrangebyscore(_EXPIRING, "-inf", now_ms, 0, count)]

    async def forget(self, file_id: str) -> None:
        """Drop what is left of a file once its blob is gone."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_key(file_id))
            pipe.zrem(_EXPIRING, file_id)
            with mapped_errors(self._redis):
                await pipe.execute()


def _key(file_id: str) -> str:
    return f"gw:file:{{{file_id}}}"


def _index_key(tenant: str) -> str:
    return f"gw:tenant:{{{tenant}}}:files"
