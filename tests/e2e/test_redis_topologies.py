"""`gateway serve` on a real 3-primary Valkey Cluster and on a Sentinel-managed primary.

On the cluster, two processes share one tenant: a create on one runs upstream, its terminal client webhook
arrives, usage settles, the list shows it, and a key revoked through one process is refused by the other well
inside its key cache (the revocation travels over pub/sub, which a cluster broadcasts to every node). Behind
Sentinel, the gateway keeps serving after its primary fails over to the replica."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ADMIN_TOKEN, Upstream, gateway_process
from tests.deliveries.conftest import Receiver, receiver  # noqa: F401  # the receiver fixture
from tests.topologies import SERVICE, Topology, primary_port, sentinels
from tests.usage.conftest import create_body, finished

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY_CACHE_SECONDS = 5  # the most a process may cache a key: a refusal sooner than this came over pub/sub
REFUSED_WITHIN = 2.0
FAILOVER_SECONDS = 30.0


def _settings() -> dict[str, str]:
    return {
        "public_base_url": "self",
        "webhook_allowed_networks": "127.0.0.0/8",
        "key_cache_seconds": str(KEY_CACHE_SECONDS),
        "webhook_first_retry_seconds": "0.2",
    }


@contextlib.contextmanager
def _client(url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        yield api


def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_two_processes_on_a_cluster_run_settle_list_and_revoke(
    redis_cluster: Topology, catalog_path: Path, tmp_path: Path, receiver: Receiver, replicate_upstream: Upstream  # noqa: F811
) -> None:
    with (
        gateway_process(redis_cluster.url, catalog_path, tmp_path / "a", **_settings()) as (first, _, _),
        gateway_process(redis_cluster.url, catalog_path, tmp_path / "b", **_settings()) as (second, _, _),
    ):
        created = httpx.post(f"{first}/admin/v1/keys", json={"tenant": "cluster-tenant"}, headers=ADMIN).json()
        token, key_id = created["token"], created["key"]["key_id"]
        hook = receiver.hook()
        with _client(first, token) as api, _client(second, token) as other:
            body = {**create_body("on a cluster"), "webhook": hook.url, "webhook_events_filter": ["completed"]}
            response = api.post("/predictions", json=body)
            assert response.status_code == 201, response.text
            prediction_id = response.json()["id"]
            assert finished(other, prediction_id)["status"] == "succeeded"
            assert [r.json["id"] for r in hook.terminal() if r.terminal] == [prediction_id]
            _until(lambda: other.get("/usage").json()["totals"]["predictions"] == 1, 10, "usage never settled")
            assert [p["id"] for p in other.get("/predictions").json()["results"]] == [prediction_id]

            assert other.get(f"/predictions/{prediction_id}").status_code == 200  # the second process caches the key
            assert httpx.delete(f"{first}/admin/v1/keys/{key_id}", headers=ADMIN).status_code in (200, 204)
            revoked = time.monotonic()
            _until(lambda: other.get(f"/predictions/{prediction_id}").status_code == 401, REFUSED_WITHIN, "still admitted")
            assert time.monotonic() - revoked < KEY_CACHE_SECONDS


@pytest.fixture(scope="module")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with sentinels(tmp_path_factory.mktemp("sentinel")) as topology:
        yield topology


def test_a_gateway_behind_sentinel_keeps_serving_after_its_primary_fails_over(
    sentinel_topology: Topology, catalog_path: Path, tmp_path: Path, replicate_upstream: Upstream
) -> None:
    with gateway_process(sentinel_topology.url, catalog_path, tmp_path / "gw", public_base_url="self") as (url, _, _):
        token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "sentinel-tenant"}, headers=ADMIN).json()["token"]
        with _client(url, token) as api:
            before = api.post("/predictions", json=create_body("before")).json()["id"]
            assert finished(api, before)["status"] == "succeeded"
            old_primary = primary_port(sentinel_topology)
            watcher = redis.Redis(port=sentinel_topology.nodes[2].port)
            watcher.execute_command("SENTINEL", "FAILOVER", SERVICE)
            _until(lambda: primary_port(sentinel_topology) != old_primary, FAILOVER_SECONDS, "no failover")
            demoted = sentinel_topology.client(old_primary)
            _until(lambda: demoted.info("replication")["role"] == "slave", FAILOVER_SECONDS, "the old primary still leads")
            deadline = time.monotonic() + FAILOVER_SECONDS
            while (response := api.post("/predictions", json=create_body("after"))).status_code != 201:
                assert time.monotonic() < deadline, response.text  # a command may meet the demoted primary once
                time.sleep(0.2)
            after = response.json()["id"]
            assert finished(api, after)["status"] == "succeeded"
            assert sentinel_topology.client(primary_port(sentinel_topology)).exists(f"gw:pred:{{{after}}}")  # on the new one
            assert api.get(f"/predictions/{before}").json()["status"] == "succeeded"  # the replica had it all
