"""Cached OpenAPI documents of versions whose catalog entry has none (fetched once from the upstream)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors


class SchemaStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def get(self, version_id: str) -> dict[str, Any] | None:
        with mapped_errors(self._redis):
            raw = await self._redis.get(_key(version_id))
        return None if raw is None else json.loads(raw)

    async def put(self, version_id: str, schema: dict[str, Any], ttl_seconds: int) -> None:
        with mapped_errors(self._redis):
            await self._redis.set(_key(version_id), json.dumps(schema, separators=(",", ":")), ex=ttl_seconds)


def _key(version_id: str) -> str:
    return f"gw:schema:{{{version_id}}}"
