"""The durable queue in front of one-slot model servers, on a real Redis."""

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.store import QueueStore, connect


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[tuple[QueueStore, str]]:
    client: aioredis.Redis = connect(redis_url)
    yield QueueStore(client), f"q-{uuid.uuid4().hex[:8]}"
    await client.aclose()


async def test_ids_come_out_in_arrival_order(queue: tuple[QueueStore, str]) -> None:
    store, name = queue
    for prediction_id in ("a", "b", "c"):
        await store.push(name, prediction_id)
    assert [await store.claim(name) for _ in range(4)] == ["a", "b", "c", None]


async def test_ids_claimed_by_a_process_that_died_come_back_first_in_their_order(queue: tuple[QueueStore, str]) -> None:
    store, name = queue
    for prediction_id in ("a", "b", "c"):
        await store.push(name, prediction_id)
    assert await store.claim(name) == "a"
    assert await store.claim(name) == "b"
    assert await store.recover(name) == 2  # what a restarted dispatcher does first
    assert [await store.claim(name) for _ in range(4)] == ["a", "b", "c", None]


async def test_a_busy_server_puts_the_id_back_at_the_head_and_done_forgets_it(queue: tuple[QueueStore, str]) -> None:
    store, name = queue
    await store.push(name, "a")
    await store.push(name, "b")
    assert await store.claim(name) == "a"
    await store.push_front(name, "a")
    assert await store.length(name) == 2
    assert await store.claim(name) == "a"
    await store.done(name, "a")
    assert await store.recover(name) == 0
    assert [await store.claim(name) for _ in range(2)] == ["b", None]
