"""The shared cooling of upstream credentials, on a real Redis server."""

import asyncio
import uuid

import redis.asyncio as aioredis

from gateway.store import Cooled, CredentialCounts, CredentialStore


async def test_a_cooling_only_lengthens_and_every_429_is_counted(client: aioredis.Redis) -> None:
    store, provider = CredentialStore(client), f"p-{uuid.uuid4().hex[:8]}"
    assert await store.cool(provider, "aaaa", 5_000) == 5_000
    assert await store.cool(provider, "aaaa", 3_000) == 5_000  # a shorter Retry-After met meanwhile
    assert await store.cool(provider, "bbbb", 4_000) == 4_000
    assert await store.counts([provider, "nothing"]) == {
        provider: CredentialCounts({"aaaa": 5_000, "bbbb": 4_000}, {"aaaa": 2, "bbbb": 1}),
        "nothing": CredentialCounts({}, {}),
    }


async def test_each_cooling_is_announced_with_the_end_stored(client: aioredis.Redis) -> None:
    store, provider = CredentialStore(client), f"p-{uuid.uuid4().hex[:8]}"
    changes = store.changes()
    assert await anext(changes) == ""  # subscribed
    await store.cool(provider, "aaaa", 9_000)
    await store.cool(provider, "aaaa", 1_000)
    heard: list[Cooled | None] = []
    while len(heard) < 2:  # a cluster may still be broadcasting an earlier test's announcements to this node
        cooled = Cooled.parse(await asyncio.wait_for(anext(changes), 5))
        if cooled is None or cooled.provider == provider:
            heard.append(cooled)
    await changes.aclose()  # type: ignore[attr-defined]
    assert heard == [Cooled(provider, "aaaa", 9_000)] * 2
    assert Cooled.parse("not json") is None and Cooled.parse('{"provider": "p"}') is None
