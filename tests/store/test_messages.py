"""Pub/sub on a real Redis, one server or a cluster: a subscription made as a client's very first command hears
what any client publishes afterwards, on a channel or on channels matching a pattern (a cluster broadcasts every
PUBLISH, wherever it is sent, to the node the subscription is on)."""

import asyncio
import uuid

import pytest

from gateway.store.redis import connect, messages


@pytest.mark.parametrize("by_pattern", [False, True])
async def test_a_first_command_subscription_hears_later_publishes(redis_url: str, by_pattern: bool) -> None:
    listener, publisher = connect(redis_url), connect(redis_url)
    prefix = f"gw:test:{uuid.uuid4().hex}"
    channels = [f"{prefix}:{i}" for i in range(5)]  # in different slots of a cluster
    stream = messages(listener, pattern=f"{prefix}:*") if by_pattern else messages(listener, channel=channels[0])
    try:
        assert await asyncio.wait_for(anext(stream), 5) is None  # subscribed
        for channel in channels if by_pattern else channels[:1]:
            await publisher.publish(channel, "changed")
            assert await asyncio.wait_for(anext(stream), 5) == (channel, "changed")
    finally:
        await stream.aclose()
        await listener.aclose()
        await publisher.aclose()
