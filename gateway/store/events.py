"""Prediction change events over Redis pub/sub: the compare-and-set script announces every applied change
on `gw:events:<prediction id>`, and each gateway process listens to all of them on one connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from gateway.store.redis import messages

_PREFIX = "gw:events:"


def channel(prediction_id: str) -> str:
    return f"{_PREFIX}{prediction_id}"


async def changes(redis: aioredis.Redis) -> AsyncIterator[str]:
    """Ids of predictions as they change; first an empty string once subscribed. StoreError when the link drops."""
    async for message in messages(redis, pattern=f"{_PREFIX}*"):
        yield "" if message is None else message[0].removeprefix(_PREFIX)
