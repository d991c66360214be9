"""A tenant's items in creation order: sorted-set members `<created ms, 15 digits>:<id>`, all scored 0.

Members of equal score sort lexicographically, so a page is one ZRANGE BYLEX from the edge of the previous
page, exact even when several items share a millisecond (Redis 6.2+, Valkey).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors


@dataclass(frozen=True)
class IndexEntry:
    id: str
    created_ms: int


def member(entry: IndexEntry) -> str:
    return f"{entry.created_ms:015d}:{entry.id}"


def add(pipe: aioredis.client.Pipeline, key: str, entry: IndexEntry, oldest_kept_ms: int) -> None:
    """Queue, on `pipe`, adding `entry` and dropping entries created before `oldest_kept_ms`."""
    pipe.zadd(key, {member(entry): 0})
    pipe.zremrangebylex(key, "-", f"({oldest_kept_ms:015d}")


async def older(
    redis: aioredis.Redis,
    key: str,
    edge: IndexEntry | None,
    count: int,
    *,
    before_ms: int | None = None,
    after_ms: int | None = None,
) -> list[IndexEntry]:
    """Up to `count` entries older than `edge` (or created before `before_ms`) and after `after_ms`; newest first."""
    start = f"({member(edge)}" if edge else (f"({before_ms:015d}" if before_ms is not None else "+")
    stop = f"({after_ms:015d};" if after_ms is not None else "-"  # ';' sorts right after ':'
    with mapped_errors(redis):
        members = await redis.zrange(key, start, stop, desc=True, bylex=True, offset=0, num=count)
    return [_entry(str(m)) for m in members]


async def newer(
    redis: aioredis.Redis, key: str, edge: IndexEntry, count: int, *, before_ms: int | None = None
) -> list[IndexEntry]:
    """Up to `count` entries newer than `edge` and created before `before_ms`; oldest first."""
    stop = f"({before_ms:015d}" if before_ms is not None else "+"
    with mapped_errors(redis):
        members = await redis.zrange(key, f"({member(edge)}", stop, bylex=True, offset=0, num=count)
    return [_entry(str(m)) for m in members]


def _entry(text: str) -> IndexEntry:
    created, _, item_id = text.partition(":")
    return IndexEntry(item_id, int(created))
