"""What a Redis URL names: one server, a cluster's nodes, or the sentinels of a service; malformed URLs are
refused without quoting a password."""

import pytest

from gateway.errors import ConfigError
from gateway.store.topology import Kind, Target, parse


@pytest.mark.parametrize("url", ["redis://:pw@127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///run/valkey.sock"])
def test_a_single_server_url_is_left_to_redis_py(url: str) -> None:
    assert parse(url) == Target(Kind.SERVER, url)


def test_a_cluster_url_names_its_nodes_and_their_credentials() -> None:
    url = "redis+cluster://gw:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    assert parse(url) == Target(
        Kind.CLUSTER, url, hosts=(("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)), username="gw", password="p@ss"
    )


def test_a_tls_cluster_url_asks_for_tls() -> None:
    assert parse("rediss+cluster://node:7000").tls


def test_a_sentinel_url_names_the_sentinels_the_service_and_their_own_credentials() -> None:
    url = "redis+sentinel://:primary-pw@s1:26379,s2:26380/mymaster?sentinel_password=s-pw&sentinel_username=watch"
    assert parse(url) == Target(
        Kind.SENTINEL,
        url,
        hosts=(("s1", 26379), ("s2", 26380)),
        password="primary-pw",
        service="mymaster",
        sentinel_username="watch",
        sentinel_password="s-pw",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+shard://:secret@h:1", "unknown scheme"),
        ("http+cluster://:secret@h:1", "unknown scheme"),
        ("redis+cluster://:secret@h", "host:port"),
        ("redis+cluster://:secret@h:1,:2", "host:port"),
        ("redis+sentinel://:secret@h:1", "/<service name>"),
        ("redis+sentinel://:secret@h:1/a/b", "/<service name>"),
        ("redis+sentinel://:secret@h:1/svc?db=2", "unknown sentinel options"),
    ],
)
def test_a_malformed_url_is_refused_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(url)
    assert problem in str(refused.value) and "secret" not in str(refused.value)
