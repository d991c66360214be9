"""Tenant timelines on a real Redis: exact paging even when items share a millisecond."""

import uuid

import redis.asyncio as aioredis

from gateway.cursors import window
from gateway.store import IndexEntry, timeline


async def _filled(client: aioredis.Redis, entries: list[IndexEntry]) -> str:
    key = f"test:timeline:{{{uuid.uuid4().hex}}}"
    async with client.pipeline(transaction=False) as pipe:
        for entry in entries:
            timeline.add(pipe, key, entry, oldest_kept_ms=0)
        await pipe.execute()
    return key


async def test_paging_both_ways_visits_every_entry_once_even_within_one_millisecond(client: aioredis.Redis) -> None:
    entries = [IndexEntry(f"id{i:02d}", 1000 + i // 4) for i in range(17)]  # four to a millisecond
    key = await _filled(client, entries)
    newest_first = sorted(entries, key=lambda e: (e.created_ms, e.id), reverse=True)

    async def older(edge: IndexEntry | None, count: int) -> list[IndexEntry]:
        return await timeline.older(client, key, edge, count)

    async def newer(edge: IndexEntry, count: int) -> list[IndexEntry]:
        return await timeline.newer(client, key, edge, count)

    pages, cursor = [], None
    while True:
        page = await window(cursor, 5, older, newer)
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [e for page in pages for e in page.entries] == newest_first
    back = await window(pages[-1].previous_cursor, 5, older, newer)
    assert back.entries == pages[-2].entries


async def test_time_bounds_are_exclusive(client: aioredis.Redis) -> None:
    key = await _filled(client, [IndexEntry("a", 1000), IndexEntry("b", 1001), IndexEntry("c", 1001), IndexEntry("d", 1002)])
    assert [e.id for e in await timeline.older(client, key, None, 10, before_ms=1002, after_ms=1000)] == ["c", "b"]
    assert [e.id for e in await timeline.older(client, key, None, 10, after_ms=1001)] == ["d"]
    assert [e.id for e in await timeline.newer(client, key, IndexEntry("a", 1000), 10, before_ms=1002)] == ["b", "c"]


async def test_entries_older_than_the_retention_are_dropped_on_add(client: aioredis.Redis) -> None:
    key = await _filled(client, [IndexEntry("old", 10), IndexEntry("kept", 20)])
    async with client.pipeline(transaction=False) as pipe:
        timeline.add(pipe, key, IndexEntry("new", 30), oldest_kept_ms=15)
        await pipe.execute()
    assert [e.id for e in await timeline.older(client, key, None, 10)] == ["new", "kept"]
