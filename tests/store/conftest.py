"""The store tests run twice: on one server and on a 3-primary cluster, where every transaction and script
must keep its keys in one hash slot."""

import pytest

from tests.topologies import Topology


@pytest.fixture(scope="session", params=["server", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    if request.param == "server":
        return redis_url
    topology: Topology = request.getfixturevalue("redis_cluster")
    return topology.url
