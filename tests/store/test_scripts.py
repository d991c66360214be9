"""Pipelines carrying Lua scripts, on a real Valkey of their own (the tests flush its scripts)."""

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.store import scripts
from gateway.store.embedded import EmbeddedRedis
from gateway.store.redis import connect

_COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("scripts-redis")) as running:
        yield running


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    redis = connect(server.url)
    await redis.flushall()
    yield redis
    await redis.aclose()


async def _calls(redis: aioredis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in (await redis.info("commandstats")).items()}


async def test_a_pipeline_with_a_loaded_script_goes_out_without_asking_about_the_script(client: aioredis.Redis) -> None:
    count = client.register_script(_COUNT)
    await count(keys=["n"], args=[1])  # loads it
    before = await _calls(client)
    async with client.pipeline(transaction=False) as pipe:
        await count(keys=["n"], args=[2], client=pipe)
        pipe.get("n")
        assert await scripts.execute(pipe) == [3, "3"]
    after = await _calls(client)
    assert after.get("cmdstat_script|exists", 0) == before.get("cmdstat_script|exists", 0)
    assert after["cmdstat_evalsha"] == before["cmdstat_evalsha"] + 1


async def test_a_script_the_server_lost_runs_once_on_its_own_after_the_pipeline(client: aioredis.Redis) -> None:
    count = client.register_script(_COUNT)
    await count(keys=["n"], args=[1])
    await client.script_flush()
    async with client.pipeline(transaction=False) as pipe:
        await count(keys=["n"], args=[2], client=pipe)
        pipe.set("other", "x")
        assert await scripts.execute(pipe) == [3, True]
    assert await client.get("n") == "3"
    assert await client.script_exists(count.sha) == [True]


async def test_the_first_failed_command_is_raised(client: aioredis.Redis) -> None:
    count = client.register_script(_COUNT)
    await client.set("text", "not a number")
    async with client.pipeline(transaction=False) as pipe:
        await count(keys=["text"], args=[1], client=pipe)
        pipe.set("after", "written")
        with pytest.raises(ResponseError, match="not an integer"):
            await scripts.execute(pipe)
    assert await client.get("after") == "written"

