"""Breakers over the suite's real Valkey: each `Breakers` on a Redis client of its own, standing for a process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from gateway.routing import Breakers
from gateway.store import BreakerPolicy, BreakerStore

# Short periods keep the tests fast; a long probe lease, so that only an announcement (not a lapsed lease) can
# tell a process that a probe closed the breaker.
POLICY = BreakerPolicy(failures=3, window_ms=1000, open_ms=600, probe_ms=5000)


class CountingRedis(aioredis.Redis):
    """A client that counts the commands and pipelines it sends (its subscriptions are not counted)."""

    sent = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent += 1
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.sent += 1
        return super().pipeline(transaction, shard_hint)


@dataclass
class Process:
    """One `Breakers` with its own client, and the transitions it made."""

    breakers: Breakers
    redis: CountingRedis
    name: str  # of its Redis connections
    transitions: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def route() -> str:
    return f"upstream:version:{uuid.uuid4().hex}"  # no `t-`: the metrics tests look for tenants by it


@pytest.fixture
async def open_process(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[Process]]]:
    """Starts a `Breakers` on a new client (policy POLICY unless given); all are closed at the end."""
    started: list[Process] = []

    async def open_one(policy: BreakerPolicy = POLICY) -> Process:
        name = f"breakers-{uuid.uuid4().hex[:8]}"
        redis = cast(CountingRedis, CountingRedis.from_url(redis_url, decode_responses=True, client_name=name))
        transitions: list[tuple[str, str]] = []
        breakers = Breakers(BreakerStore(redis), policy, lambda route, state: transitions.append((route, state)))
        await breakers.start()
        process = Process(breakers, redis, name, transitions)
        started.append(process)
        return process

    yield open_one
    for process in started:
        await process.breakers.aclose()
        await process.redis.aclose()


async def eventually(check: Callable[[], bool], within: float = 2.0) -> float:
    """Seconds until `check()` holds; fails the test if it does not within `within` seconds."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < within, "not within the time allowed"
        await asyncio.sleep(0.005)
    return time.monotonic() - began
