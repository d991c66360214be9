"""Read-only depth reads of the background queues (what /metrics reports), on real Redis servers."""

import uuid

import redis.asyncio as aioredis

from gateway.store import Delivery, DeliveryDepth, DeliveryStore, QueueStore, Schedule, ScheduleDepth, SlotQueueDepth
from gateway.store.redis import connect


async def test_a_schedule_counts_every_id_and_those_due_but_unclaimed(client: aioredis.Redis) -> None:
    schedule = Schedule(client, f"depth-{uuid.uuid4().hex[:8]}")
    assert await schedule.depth(now_ms=1_000) == ScheduleDepth(0, 0)
    for item_id, due_ms in (("past", 500), ("now", 1_000), ("later", 5_000)):
        await schedule.add(item_id, due_ms)
    assert await schedule.depth(now_ms=1_000) == ScheduleDepth(scheduled=3, overdue=2)
    assert await schedule.claim(now_ms=1_000, lease_ms=10_000, count=1) == ["past"]  # leased: no longer overdue
    assert await schedule.depth(now_ms=1_000) == ScheduleDepth(scheduled=3, overdue=1)


async def test_a_slot_queue_counts_waiting_claimed_and_running_ids(client: aioredis.Redis) -> None:
    queue = QueueStore(client, f"q-{uuid.uuid4().hex[:8]}")
    assert await queue.depth() == SlotQueueDepth(0, 0, 0)
    for tenant, prediction_id in (("t1", "a"), ("t1", "b"), ("t2", "c"), ("t2", "d")):
        await queue.push(tenant, prediction_id)
    first, second = await queue.claim(), await queue.claim()
    assert first is not None and second is not None
    await queue.accepted(first, f"server/{first}", deadline=2e9)
    assert await queue.depth() == SlotQueueDepth(waiting=2, dispatching=1, running=1)
    await queue.push_front(second)
    assert await queue.depth() == SlotQueueDepth(waiting=3, dispatching=0, running=1)


async def test_the_delivery_stream_counts_pending_messages_and_the_lag(own_redis_url: str) -> None:
    redis = connect(own_redis_url)
    store = DeliveryStore(redis)
    assert await store.depth() == DeliveryDepth(0, 0)  # no stream, no group yet
    await store.ensure_group()
    for n in range(3):
        await store.enqueue(Delivery(f"wh-{n}", "https://example.com/hook", "t1", f"p{n}", "{}", True, 0.0))
    assert await store.depth() == DeliveryDepth(pending=0, lag=3)
    read = await store.read("sender-1", count=2, block_ms=0)
    assert await store.depth() == DeliveryDepth(pending=2, lag=1)
    await store.finish([read[0][0]])  # acknowledged and deleted
    assert await store.depth() == DeliveryDepth(pending=1, lag=1)
    await redis.aclose()
