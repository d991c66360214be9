"""The Redis client factory and the mapping of redis-py errors to StoreError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gateway.errors import StoreError


def connect(url: str) -> aioredis.Redis:
    """A pooled asyncio client; replies are decoded as UTF-8 strings."""
    return aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30, socket_connect_timeout=5)


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise any redis-py error as StoreError, chained, without the server's address or credentials."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise StoreError(f"The gateway's state store is unavailable ({type(exc).__name__})") from exc
