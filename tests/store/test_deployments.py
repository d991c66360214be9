"""Tenant deployment records on a real Redis: one slot per tenant, no overwrite, compare-and-set releases."""

import uuid
from dataclasses import replace

import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.store import DeploymentStore, IndexEntry, StoredDeployment


def _deployment(tenant: str, name: str, created_ms: int = 1_000) -> StoredDeployment:
    return StoredDeployment(tenant, name, "a/m", "ab" * 32, "cpu", 0, 1, 1, created_ms, created_ms, {"steps": 7})


async def test_a_tenants_deployments_live_in_its_hash_slot_and_are_never_overwritten(client: aioredis.Redis) -> None:
    store, tenant = DeploymentStore(client), f"t-{uuid.uuid4().hex}"
    assert await store.insert(_deployment(tenant, "one"))
    assert not await store.insert(replace(_deployment(tenant, "one"), hardware="gpu"))
    assert await store.insert(_deployment(tenant, "two", created_ms=2_000))
    keys = [str(k) async for k in client.scan_iter(match=f"*{tenant}*")]
    assert len(keys) == 3 and {key_slot(k.encode()) for k in keys} == {key_slot(tenant.encode())}
    assert await store.get(tenant, "one") == _deployment(tenant, "one")
    newest_first = await store.older(tenant, None, 10)
    assert newest_first == [IndexEntry("two", 2_000), IndexEntry("one", 1_000)]
    assert [d.name for d in await store.load(tenant, newest_first)] == ["two", "one"]


async def test_a_release_replaces_only_the_release_it_was_made_from(client: aioredis.Redis) -> None:
    store, tenant = DeploymentStore(client), f"t-{uuid.uuid4().hex}"
    first = _deployment(tenant, "app")
    await store.insert(first)
    second = replace(first, number=2, hardware="gpu")
    assert await store.replace(first, second)
    assert not await store.replace(first, replace(first, number=2, hardware="other"))  # made from release 1: stale
    assert await store.get(tenant, "app") == second
    assert await store.delete(second)
    assert not await store.delete(second)
    assert not await store.replace(second, replace(second, number=3))
    again = _deployment(tenant, "app", created_ms=5_000)  # made anew: release 1 once more, at another time
    assert await store.insert(again)
    assert not await store.replace(first, replace(first, number=2, hardware="stale"))
    assert await store.get(tenant, "app") == again
    assert await store.delete(again)
    assert await store.get(tenant, "app") is None and await store.older(tenant, None, 10) == []
