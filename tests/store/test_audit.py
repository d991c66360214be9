"""The audit stream on a real Redis: entries older than the retention are trimmed on write and hidden on read;
reads page newest first through filters."""

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.store import AuditFilter, AuditStore, connect
from gateway.store.audit import STREAM


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # A database of its own, since these tests empty the stream (a cluster has one database, used by no gateway here)
    redis = connect(redis_url if redis_url.startswith("redis+cluster") else redis_url.rsplit("/", 1)[0] + "/7")
    await redis.delete(STREAM)
    yield redis
    await redis.delete(STREAM)
    await redis.aclose()


def _entry(action: str, tenants: str = "acme") -> dict[str, str]:
    return {"action": action, "subject_kind": "key", "subject_id": "k1", "tenants": tenants}


async def test_entries_older_than_the_retention_are_trimmed_when_the_next_is_written(client: aioredis.Redis) -> None:
    audit = AuditStore(client, retention_seconds=1)
    await audit.append(_entry("key.create"))
    await audit.append(_entry("key.update"))
    assert await client.xlen(STREAM) == 2
    time.sleep(1.1)
    await audit.append(_entry("key.delete"))
    assert [fields["action"] for _, fields in await client.xrange(STREAM)] == ["key.delete"]


async def test_entries_older_than_the_retention_are_not_read_before_they_are_trimmed(client: aioredis.Redis) -> None:
    audit = AuditStore(client, retention_seconds=1)
    await audit.append(_entry("key.create"))
    assert [f["action"] for _, f in (await audit.page(AuditFilter())).entries] == ["key.create"]
    time.sleep(1.1)
    assert (await audit.page(AuditFilter())).entries == [] and await client.xlen(STREAM) == 1
    assert [f["action"] for _, f in (await AuditStore(client, retention_seconds=60).page(AuditFilter())).entries] == [
        "key.create"
    ]


async def test_filtered_pages_cover_every_match_once_newest_first(client: aioredis.Redis) -> None:
    audit = AuditStore(client, retention_seconds=60)
    ids = [await audit.append(_entry(f"a{i}", "acme" if i % 3 else "acme other")) for i in range(1200)]
    matching = [entry_id for i, entry_id in enumerate(ids) if i % 3 == 0][::-1]  # 400, across three read batches
    seen: list[str] = []
    before = None
    while True:
        page = await audit.page(AuditFilter(tenant="other", before=before, limit=150))
        seen += [entry_id for entry_id, _ in page.entries]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == matching
    assert [f["action"] for _, f in (await audit.page(AuditFilter(fields={"action": "a7"}))).entries] == ["a7"]
