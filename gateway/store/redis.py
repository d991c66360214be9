"""The Redis client factory and the mapping of redis-py errors to StoreError.

Whoever builds the client may give it an `ErrorObserver`, told the kind of every error mapped on the client's
behalf (the composition root counts them in the metrics); the store itself knows nothing of metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gateway.errors import StoreError

MAX_CONNECTIONS = 256
POOL_WAIT_SECONDS = 10.0

ErrorObserver = Callable[[str], None]
"""Called with the kind (see `error_kind`) of each redis-py error mapped to StoreError."""

# Most specific first: loading and pool exhaustion are connection errors, a read-only replica's refusal a response.
_KINDS: tuple[tuple[type[redis_errors.RedisError], str], ...] = (
    (redis_errors.TimeoutError, "timeout"),
    (redis_errors.BusyLoadingError, "loading"),
    (redis_errors.MaxConnectionsError, "pool_exhausted"),
    (redis_errors.ConnectionError, "connection"),
    (redis_errors.ReadOnlyError, "read_only"),
    (redis_errors.NoScriptError, "no_script"),
    (redis_errors.ResponseError, "response"),
)


class ObservedRedis(aioredis.Redis):
    """redis-py's asyncio client, carrying the observer of the errors mapped on its behalf."""

    error_observer: ErrorObserver | None = None


def connect(url: str, on_error: ErrorObserver | None = None) -> aioredis.Redis:
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
    # from_pool builds `cls(...)` and owns the pool (aclose() closes its connections); its annotation says Redis.
    client = cast(ObservedRedis, ObservedRedis.from_pool(pool))
    client.error_observer = on_error
    return client


def error_kind(exc: redis_errors.RedisError) -> str:
    return next((kind for error, kind in _KINDS if isinstance(exc, error)), "other")


@contextlib.contextmanager
def mapped_errors(redis: aioredis.Redis) -> Iterator[None]:
    """Re-raise any redis-py error of a command on `redis` as StoreError, chained, without the server's address
    or credentials; the client's error observer, if any, is told the error's kind first."""
    try:
        yield
    except redis_errors.RedisError as exc:
        observer = redis.error_observer if isinstance(redis, ObservedRedis) else None
        if observer is not None:
            observer(error_kind(exc))
        raise StoreError(f"The gateway's state store is unavailable ({type(exc).__name__})") from exc


async def messages(
    redis: aioredis.Redis, *, channel: str | None = None, pattern: str | None = None
) -> AsyncIterator[tuple[str, str] | None]:
    """`(channel, data)` of each message published on `channel` or on channels matching `pattern`; None once
    subscribed. Raises StoreError when the subscription drops."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        with mapped_errors(redis):
            await (pubsub.psubscribe(pattern) if pattern else pubsub.subscribe(channel or ""))
        yield None
        while True:
            with mapped_errors(redis):
                message = await pubsub.get_message(timeout=30.0)
            if message is not None:
                yield str(message["channel"]), str(message["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
