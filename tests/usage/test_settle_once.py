"""A process settles a finished prediction through the store once; another process still settles it, on a real
Valkey of its own (the test counts its commands)."""

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from gateway.status import Status
from gateway.store import StoredPrediction, UsageStore, default_retention
from gateway.store.embedded import EmbeddedRedis
from gateway.store.redis import connect
from gateway.usage.metering import Metering
from gateway.usage.prices import Price

_PRICE = Price(per_prediction=Decimal("0.01"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("settle-redis")) as running:
        yield running


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    redis = connect(server.url)
    yield redis
    await redis.aclose()


def _finished(prediction_id: str) -> StoredPrediction:
    doc = {"id": prediction_id, "model": "acme/model", "version": "v", "status": "succeeded", "output": "done"}
    return StoredPrediction(prediction_id, "acme", "k1", "upstream", "u1", Status.SUCCEEDED, doc, 1_796_000_000_000, 0.0)


async def _settlements(redis: aioredis.Redis) -> int:
    return int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_prediction_this_process_settled_costs_no_second_settlement(client: aioredis.Redis) -> None:
    metering = Metering(UsageStore(client, default_retention(3600)), lambda model: _PRICE)
    await metering.settle(_finished("p0"))  # loads the script
    before = await _settlements(client)
    await metering.settle(_finished("p1"))
    await metering.settle(_finished("p1"))  # the follow-ups' visit
    assert await _settlements(client) == before + 1


async def test_another_process_settles_it_through_the_store_which_counts_it_once(client: aioredis.Redis) -> None:
    store = UsageStore(client, default_retention(3600))
    first, second = Metering(store, lambda model: _PRICE), Metering(store, lambda model: _PRICE)
    before = await _settlements(client)
    await first.settle(_finished("p2"))
    await second.settle(_finished("p2"))
    assert await _settlements(client) == before + 2
    totals = await client.hgetall("gw:usage:{acme}:totals")
    assert totals["k1|acme/model|succeeded"] == "3"  # p0, p1 and p2, each once
