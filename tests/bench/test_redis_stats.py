"""The harness's Redis meter on a real Valkey: commands and round trips per request, a pipeline counted as the
one round trip it is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bench.redis_stats import Meter
from gateway.store.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def quiet_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey nobody else uses, so that the meter sees only what a test sends."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis") / "data") as server:
        yield server.url


def test_a_pipeline_is_one_round_trip_of_several_commands(quiet_redis: str) -> None:
    meter = Meter(quiet_redis, idle_seconds=0.2)
    with redis.Redis.from_url(quiet_redis) as client:
        client.ping()  # the connection is set up before the meter starts
        meter.start()
        for n in range(20):
            client.pipeline(transaction=False).set(f"k{n}", n).expire(f"k{n}", 60).get(f"k{n}").execute()
        cost = meter.cost(20)
    assert cost.round_trips == pytest.approx(1, abs=0.1)
    assert cost.commands == pytest.approx(3, abs=0.1)
    assert cost.by_command == {"set": 1, "expire": 1, "get": 1}


def test_separate_commands_are_a_round_trip_each(quiet_redis: str) -> None:
    meter = Meter(quiet_redis, idle_seconds=0.2)
    with redis.Redis.from_url(quiet_redis) as client:
        client.ping()
        meter.start()
        for n in range(20):
            client.set(f"j{n}", n)
            client.get(f"j{n}")
        cost = meter.cost(20)
    assert cost.round_trips == pytest.approx(2, abs=0.1)
