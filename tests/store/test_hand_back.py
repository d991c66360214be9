"""What a stopping process gives back to Redis so that another takes it at once, not a lease later: leased
schedule ids and pending webhook deliveries (the slot queue's claims: `test_queue.py`)."""

import uuid

import redis.asyncio as aioredis

from gateway.store import Delivery, DeliveryStore, Schedule
from gateway.store.redis import connect

LEASE_MS = 60_000


async def test_leased_schedule_ids_given_back_are_due_at_once_unless_their_turn_ended(client: aioredis.Redis) -> None:
    schedule = Schedule(client, f"hand-back-{uuid.uuid4().hex[:8]}")
    for item_id in ("held", "rescheduled", "removed"):
        await schedule.add(item_id, 1_000)
    assert sorted(await schedule.claim(now_ms=1_000, lease_ms=LEASE_MS, count=10)) == ["held", "removed", "rescheduled"]
    await schedule.reschedule("rescheduled", 9_000)  # its visit ended: not this claimer's to give back any more
    await schedule.remove("removed")
    leases = {item_id: 1_000 + LEASE_MS for item_id in ("held", "rescheduled", "removed")}
    assert await schedule.release(leases, now_ms=2_000) == 1
    assert await schedule.claim(now_ms=2_000, lease_ms=LEASE_MS, count=10) == ["held"]  # another process takes it now
    assert (await schedule.due_at("rescheduled"), await schedule.due_at("removed")) == (9_000, None)


async def test_deliveries_given_up_by_a_stopping_sender_are_taken_by_the_next_reclaim(own_redis_url: str) -> None:
    redis = connect(own_redis_url)
    store = DeliveryStore(redis)
    await store.ensure_group()
    for n in range(3):
        await store.enqueue(Delivery(f"wh-{n}", "https://example.com/hook", "t1", f"p{n}", "{}", True, 0.0))
    held = [message_id for message_id, _ in await store.read("stopping", count=3, block_ms=0)]
    assert (await store.reclaim("other", LEASE_MS, 10, "0-0"))[1] == []  # renewed just now: not taken over
    assert await store.release("stopping", held[:2]) == set(held[:2])
    _, taken = await store.reclaim("other", LEASE_MS, 10, "0-0")
    assert [message_id for message_id, _ in taken] == held[:2]  # at once, not a lease later
    assert await store.release("stopping", held[:2]) == set()  # no longer its own to give up
    assert await store.hold("stopping", held) == {held[2]}
    await redis.aclose()
