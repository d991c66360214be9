"""The Redis client factory and the mapping of redis-py errors to StoreError."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gateway.errors import StoreError

MAX_CONNECTIONS = 256
POOL_WAIT_SECONDS = 10.0


def connect(url: str) -> aioredis.Redis:
    """A pooled asyncio client; replies are decoded as UTF-8 strings.

    When every connection is busy (a burst, or the server stalls for a moment) a command waits up to
    POOL_WAIT_SECONDS for one instead of failing at once, as redis-py's default pool does."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise any redis-py error as StoreError, chained, without the server's address or credentials."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise StoreError(f"The gateway's state store is unavailable ({type(exc).__name__})") from exc


async def messages(
    redis: aioredis.Redis, *, channel: str | None = None, pattern: str | None = None
) -> AsyncIterator[tuple[str, str] | None]:
    """`(channel, data)` of each message published on `channel` or on channels matching `pattern`; None once
    subscribed. Raises StoreError when the subscription drops."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        with mapped_errors():
            await (pubsub.psubscribe(pattern) if pattern else pubsub.subscribe(channel or ""))
        yield None
        while True:
            with mapped_errors():
                message = await pubsub.get_message(timeout=30.0)
            if message is not None:
                yield str(message["channel"]), str(message["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
