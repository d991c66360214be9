"""The durable queue in front of one-slot model servers, on a real Redis."""

import uuid

import pytest
import redis.asyncio as aioredis

from gateway.store import QueueStore


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


async def _claim_all(queue: QueueStore) -> list[str | None]:
    claimed: list[str | None] = []
    while (item := await queue.claim()) is not None:
        claimed.append(item)
    return [*claimed, None]


async def test_one_tenants_ids_come_out_in_arrival_order(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    for prediction_id in ("a", "b", "c"):
        await queue.push("t1", prediction_id)
    assert await _claim_all(queue) == ["a", "b", "c", None]


async def test_tenants_take_turns_so_a_backlog_does_not_hold_up_another_tenant(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    for prediction_id in ("a1", "a2", "a3", "a4"):
        await queue.push("busy", prediction_id)
    await queue.push("quiet", "b1")
    await queue.push("third", "c1")
    await queue.push("quiet", "b2")
    assert await _claim_all(queue) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4", None]


async def test_ids_claimed_by_a_consumer_whose_lease_ran_out_come_back_first_in_order(client: aioredis.Redis, name: str) -> None:
    dead, alive = QueueStore(client, name, "dead"), QueueStore(client, name, "alive")
    for prediction_id in ("a", "b", "c", "d"):
        await dead.push("t1", prediction_id)
    assert [await dead.claim(), await dead.claim(), await alive.claim()] == ["a", "b", "c"]
    assert await alive.recover() == 0  # the other consumer's lease still runs
    await client.delete(f"gw:queue:{{{name}}}:alive:dead")  # as when its lease expires
    assert await alive.recover() == 2
    assert await _claim_all(alive) == ["a", "b", "d", None]
    assert await QueueStore(client, name, "third").recover() == 0  # "c" stays with the live consumer


async def test_a_busy_server_puts_the_id_back_first_in_line_and_its_tenant_first_in_turn(
    client: aioredis.Redis, name: str
) -> None:
    queue = QueueStore(client, name)
    await queue.push("t1", "a")
    await queue.push("t1", "b")
    await queue.push("t2", "x")
    assert await queue.claim() == "a"
    await queue.push_front("a")
    assert await queue.claim() == "a"
    await queue.done("a")
    await client.delete(f"gw:queue:{{{name}}}:alive:{queue.consumer}")
    assert await QueueStore(client, name).recover() == 0  # done: nothing left to take back
    assert await _claim_all(queue) == ["x", "b", None]


async def test_an_id_that_failed_unexpectedly_goes_to_the_back_until_its_last_attempt(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.push("poisoner", "p")
    await queue.push("poisoner", "q")
    await queue.push("victim", "v")
    assert await queue.claim() == "p"
    assert await queue.retry_later("p", 3) is True
    assert await queue.claim() == "v"  # the other tenant's turn, then the poisoner's next one
    assert await queue.claim() == "q"
    assert await queue.claim() == "p"
    assert await queue.retry_later("p", 3) is True
    assert await queue.claim() == "p"
    assert await queue.retry_later("p", 3) is False  # the third failure: left claimed, not queued again
    assert await queue.claim() is None
    for prediction_id in ("p", "q", "v"):
        await queue.done(prediction_id)
    await client.delete(f"gw:queue:{{{name}}}:alive:{queue.consumer}")
    assert await QueueStore(client, name).recover() == 0
    await queue.push("poisoner", "p")
    assert await queue.claim() == "p" and await queue.retry_later("p", 3) is True  # done forgot the count


async def test_leases_expire(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.renew()
    assert 0 < await client.pttl(f"gw:queue:{{{name}}}:alive:{queue.consumer}") <= 10_000


async def test_accepted_runs_leave_the_queue_and_come_due_at_their_deadline(client: aioredis.Redis, name: str) -> None:
    queue = QueueStore(client, name)
    await queue.push("t1", "a")
    await queue.push("t1", "b")
    assert await queue.claim() == "a" and await queue.claim() == "b"
    await queue.accepted("a", "http://s1|a", deadline=100.0)
    await queue.accepted("b", "http://s2|b", deadline=200.0)
    await client.delete(f"gw:queue:{{{name}}}:alive:{queue.consumer}")
    assert await QueueStore(client, name).recover() == 0  # running, not claimed: nothing to take back
    assert await queue.overdue(150.0) == ["http://s1|a"]
    await queue.finished("http://s1|a")
    assert await queue.overdue(250.0) == ["http://s2|b"]


async def test_a_stopping_consumer_hands_its_claims_back_first_in_line_at_once(client: aioredis.Redis, name: str) -> None:
    stopping, other = QueueStore(client, name, "stopping"), QueueStore(client, name, "other")
    for prediction_id in ("a", "b", "c"):
        await stopping.push("t1", prediction_id)
    assert [await stopping.claim(), await stopping.claim()] == ["a", "b"]
    assert await stopping.release() == 2
    assert await other.recover() == 0  # nothing waits for a lease to run out
    assert await _claim_all(other) == ["a", "b", "c", None]
    assert await stopping.release() == 0
