"""The durable queue in front of one-slot model servers, on a real Redis."""

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.store import QueueStore, connect


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


async def test_ids_come_out_in_arrival_order(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    for prediction_id in ("a", "b", "c"):
        await queue.push(prediction_id)
    assert [await queue.claim() for _ in range(4)] == ["a", "b", "c", None]


async def test_ids_claimed_by_a_consumer_whose_lease_ran_out_come_back_first_in_order(client: aioredis.Redis, name: str) -> None:
    dead, alive = QueueStore(client, name, "dead"), QueueStore(client, name, "alive")
    for prediction_id in ("a", "b", "c", "d"):
        await dead.push(prediction_id)
    assert [await dead.claim(), await dead.claim(), await alive.claim()] == ["a", "b", "c"]
    assert await alive.recover() == 0  # the other consumer's lease still runs
    await client.delete(f"gw:queue:{{{name}}}:alive:dead")  # as when its lease expires
    assert await alive.recover() == 2
    assert [await alive.claim() for _ in range(4)] == ["a", "b", "d", None]
    assert await QueueStore(client, name, "third").recover() == 0  # "c" stays with the live consumer


async def test_a_busy_server_puts_the_id_back_at_the_head_and_done_forgets_it(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.push("a")
    await queue.push("b")
    assert await queue.claim() == "a"
    await queue.push_front("a")
    assert await client.lrange(f"gw:queue:{{{name}}}", 0, -1) == ["a", "b"]
    assert await queue.claim() == "a"
    await queue.done("a")
    await client.delete(f"gw:queue:{{{name}}}:alive:{queue.consumer}")
    assert await QueueStore(client, name).recover() == 0
    assert [await queue.claim() for _ in range(2)] == ["b", None]


async def test_leases_expire(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.renew()
    assert 0 < await client.pttl(f"gw:queue:{{{name}}}:alive:{queue.consumer}") <= 10_000


async def test_accepted_runs_leave_the_queue_and_come_due_at_their_deadline(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.push("a")
    await queue.push("b")
    assert await queue.claim() == "a" and await queue.claim() == "b"
    await queue.accepted("a", "http://s1|a", deadline=100.0)
    await queue.accepted("b", "http://s2|b", deadline=200.0)
    await client.delete(f"gw:queue:{{{name}}}:alive:{queue.consumer}")
    assert await QueueStore(client, name).recover() == 0  # running, not claimed: nothing to take back
    assert await queue.overdue(150.0) == ["http://s1|a"]
    await queue.finished("http://s1|a")
    assert await queue.overdue(250.0) == ["http://s2|b"]
