"""Secrets every gateway process must share, created once in Redis by whichever process comes first."""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors


async def shared_secret(redis: aioredis.Redis, name: str) -> bytes:
    key = f"gw:secret:{{{name}}}"
    with mapped_errors():
        await redis.set(key, secrets.token_hex(32), nx=True)
        value = await redis.get(key)
    return str(value).encode()
