"""The Redis client factory (one server, a cluster or a Sentinel-managed primary: see `topology`) and the
mapping of redis-py errors to StoreError.

Whoever builds the client may give it an `ErrorObserver`, told the kind of every error mapped on the client's
behalf (the composition root counts them in the metrics); the store itself knows nothing of metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.typing import EncodableT, ScriptTextT

from gateway.errors import StoreError
from gateway.store.topology import Kind, Target, parse

MAX_CONNECTIONS = 256  # per server (per node of a cluster)
POOL_WAIT_SECONDS = 10.0
_HEALTH_CHECK_SECONDS = 30
_CONNECT_SECONDS = 5

ErrorObserver = Callable[[str], None]
"""Called with the kind (see `error_kind`) of each redis-py error mapped to StoreError."""

# Most specific first: loading and pool exhaustion are connection errors, a read-only replica's refusal a response.
# redis-py's cluster client raises RedisClusterException (not a RedisError) when no node of the URL answers.
_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.TimeoutError, "timeout"),
    (redis_errors.BusyLoadingError, "loading"),
    (redis_errors.MaxConnectionsError, "pool_exhausted"),
    (redis_errors.ConnectionError, "connection"),
    (redis_errors.ReadOnlyError, "read_only"),
    (redis_errors.NoScriptError, "no_script"),
    (redis_errors.ResponseError, "response"),
    (redis_errors.RedisClusterException, "cluster"),
)
_MAPPED = (redis_errors.RedisError, redis_errors.RedisClusterException)


class ObservedRedis(aioredis.Redis):
    """redis-py's asyncio client, carrying the observer of the errors mapped on its behalf."""

    error_observer: ErrorObserver | None = None


class ObservedCluster(RedisCluster):
    """redis-py's asyncio cluster client, carrying the observer of the errors mapped on its behalf, whose
    pipelines also run the scripts registered on it."""

    error_observer: ErrorObserver | None = None
    _bodies: dict[str, str]

    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]  # annotated as the sync Script
        registered = super().register_script(script)
        self.__dict__.setdefault("_bodies", {})[registered.sha] = registered.script
        return registered

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise redis_errors.RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's own pipeline() builds a ClusterPipeline the same way; its stubs call the class abstract
        return _ScriptingPipeline(self, transaction, self.__dict__.get("_bodies", {}))  # type: ignore[abstract]


class _ScriptingPipeline(ClusterPipeline):
    """redis-py refuses EVALSHA in a cluster pipeline, since it cannot load a script a node lacks midway.
    The stores queue their scripts with creates and settlements, so here a registered script goes as EVAL with
    its body: any node runs it, and caches it by the same digest."""

    def __init__(self, client: RedisCluster, transaction: Any | None, bodies: dict[str, str]) -> None:
        super().__init__(client, transaction)
        self._bodies = bodies

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: EncodableT) -> ClusterPipeline:
        # A coroutine, as the script object awaits what this returns: awaiting the pipeline itself would reset it.
        return self.execute_command("EVAL", self._bodies[sha], numkeys, *keys_and_args)


def connect(url: str, on_error: ErrorObserver | None = None) -> aioredis.Redis:
    """A pooled asyncio client for what `url` names (see `topology`); replies are decoded as UTF-8 strings.

    The cluster client is typed as the single-server one: it offers every command, pipeline, script and pub/sub
    call the stores make, with one rule the stores keep (every transaction and script touches one hash slot),
    and the store tests run against a real cluster to hold that."""
    target = parse(url)
    client: ObservedRedis | ObservedCluster
    if target.kind is Kind.CLUSTER:
        client = _cluster(target)
    elif target.kind is Kind.SENTINEL:
        client = _sentinel_primary(target)
    else:
        client = _server(url)
    client.error_observer = on_error
    return cast(aioredis.Redis, client)


def _server(url: str) -> ObservedRedis:
    # When every connection is busy (a burst, or the server stalls for a moment) a command waits up to
    # POOL_WAIT_SECONDS for one instead of failing at once, as redis-py's default pool does.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        health_check_interval=_HEALTH_CHECK_SECONDS,
        socket_connect_timeout=_CONNECT_SECONDS,
    )
    # from_pool builds `cls(...)` and owns the pool (aclose() closes its connections); its annotation says Redis.
    return cast(ObservedRedis, ObservedRedis.from_pool(pool))


def _cluster(target: Target) -> ObservedCluster:
    # One pool per node, at most MAX_CONNECTIONS each; the client follows MOVED/ASK and refreshes the slot map.
    return ObservedCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.hosts], **_node_options(target))


def _node_options(target: Target) -> dict[str, Any]:
    """How every connection to a data node (a cluster's, or a Sentinel's primary) is made."""
    return {
        "username": target.username,
        "password": target.password,
        "ssl": target.tls,
        "max_connections": MAX_CONNECTIONS,
        "decode_responses": True,
        "health_check_interval": _HEALTH_CHECK_SECONDS,
        "socket_connect_timeout": _CONNECT_SECONDS,
    }


def _sentinel_primary(target: Target) -> ObservedRedis:
    # Each new connection asks the sentinels where the primary is now, and a connection to a server that is no
    # longer the primary is dropped, so after a failover the next command reaches the new one.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        list(target.hosts),
        sentinel_kwargs={
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_connect_timeout": _CONNECT_SECONDS,
        },
        **_node_options(target),
    )
    primary = sentinels.master_for(
        target.service, redis_class=ObservedRedis, connection_pool_class=_BlockingSentinelPool, timeout=POOL_WAIT_SECONDS
    )
    return cast(ObservedRedis, primary)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (connections to wherever the primary is now) that, like the single server's, waits up to
    POOL_WAIT_SECONDS for a free connection instead of failing at once."""


def error_kind(exc: Exception) -> str:
    return next((kind for error, kind in _KINDS if isinstance(exc, error)), "other")


@contextlib.contextmanager
def mapped_errors(redis: aioredis.Redis) -> Iterator[None]:
    """Re-raise any redis-py error of a command on `redis` as StoreError, chained, without the server's address
    or credentials; the client's error observer, if any, is told the error's kind first."""
    try:
        yield
    except _MAPPED as exc:
        observer: ErrorObserver | None = getattr(redis, "error_observer", None)
        if observer is not None:
            observer(error_kind(exc))
        raise StoreError(f"The gateway's state store is unavailable ({type(exc).__name__})") from exc


async def messages(
    redis: aioredis.Redis, *, channel: str | None = None, pattern: str | None = None
) -> AsyncIterator[tuple[str, str] | None]:
    """`(channel, data)` of each message published on `channel` or on channels matching `pattern`; None once
    subscribed. Raises StoreError when the subscription drops."""
    pubsub = await _pubsub(redis)
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


async def _pubsub(redis: aioredis.Redis) -> aioredis.client.PubSub:
    """A pub/sub connection. On a cluster it goes to one node, chosen by the channel's slot: every node hears
    every PUBLISH (the cluster bus broadcasts them), so one subscription on one node sees all of them, and when
    that node fails the subscription drops and the caller subscribes again wherever the slot map now points."""
    if isinstance(redis, RedisCluster):
        with mapped_errors(redis):
            await redis.initialize()  # the slot map the pub/sub connection is routed by
    return redis.pubsub(ignore_subscribe_messages=True)
