"""The store tests run twice: on one server and on a 3-primary cluster, where every transaction and script
must keep its keys in one hash slot."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store.embedded import EmbeddedRedis
from gateway.store.redis import connect
from tests.topologies import Topology


@pytest.fixture(scope="session", params=["server", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    if request.param == "server":
        return redis_url
    topology: Topology = request.getfixturevalue("redis_cluster")
    return topology.url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture(scope="module")
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server no gateway's delivery worker reads from (the delivery stream's key is fixed)."""
    with EmbeddedRedis(Path(tmp_path_factory.mktemp("own-redis"))) as server:
        yield server.url
