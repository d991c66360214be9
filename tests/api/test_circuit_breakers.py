"""Circuit breakers on the create path: a route that keeps failing is left alone by every gateway process for a
while, then tried again by one probe request at a time; the admin API shows it. Each test has a Redis of its own:
breakers are shared by every gateway on a Redis."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store.embedded import EmbeddedRedis
from tests.api.test_failover import BODY, _catalog
from tests.conftest import ADMIN_TOKEN, UPSTREAM_TOKEN, Upstream, gateway_on_own_redis, gateway_process
from tests.emulator import Fault
from tests.usage.conftest import create_body

PRIMARY = "replicate:version:95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
BREAKER = {"breaker_failures": 2, "breaker_window_seconds": 30, "breaker_open_seconds": 1.5}


def _primary_route(admin: httpx.Client) -> dict[str, Any]:
    listed = admin.get("/providers")
    assert listed.status_code == 200, listed.text
    replicate = next(p for p in listed.json()["providers"] if p["name"] == "replicate")
    route: dict[str, Any] = next(r for r in replicate["routes"] if r["route"] == PRIMARY)
    return route


def test_a_failing_route_is_left_alone_then_probed_back_into_service(
    tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    replicate_upstream.controls.inject(Fault("create", status=500, times=1000))
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    with gateway_on_own_redis(tmp_path, catalog, **BREAKER) as (_, gateway), gateway.client(gateway.new_key()[0]) as api:
        for _ in range(4):  # two failures open the breaker; the next two creates do not ask the route at all
            assert api.post("/predictions", json=BODY).status_code == 201
        assert len(replicate_upstream.requests("POST", "/predictions")) == 2
        assert len(aggregator_upstream.requests("POST", "/predictions")) == 4
        route = _primary_route(gateway.admin)
        assert route["breaker"]["state"] == "open" and route["breaker"]["failures"] == 2
        assert route["breaker"]["last_failure"] == "The upstream provider failed with HTTP 500"
        assert route["models"] == ["stability-ai/stable-diffusion-inpainting"]
        replicate = next(p for p in gateway.admin.get("/providers").json()["providers"] if p["name"] == "replicate")
        assert [c["state"] for c in replicate["credentials"]] == ["available"]
        assert UPSTREAM_TOKEN not in gateway.admin.get("/providers").text

        replicate_upstream.controls.clear_faults()  # the upstream recovers
        time.sleep(1.6)
        for _ in range(2):  # the first is the probe; its success closes the breaker for the second
            assert api.post("/predictions", json=BODY).status_code == 201
        assert len(replicate_upstream.requests("POST", "/predictions")) == 4
        assert len(aggregator_upstream.requests("POST", "/predictions")) == 4
        assert _primary_route(gateway.admin)["breaker"]["state"] == "closed"


def test_when_every_route_is_open_creates_fail_fast_and_leave_nothing(
    tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    for upstream in (replicate_upstream, aggregator_upstream):
        upstream.controls.inject(Fault("create", status=503, times=1000))
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    with gateway_on_own_redis(tmp_path, catalog, **BREAKER) as (_, gateway), gateway.client(gateway.new_key()[0]) as api:
        for _ in range(2):
            assert api.post("/predictions", json=BODY).status_code == 503
        refused = api.post("/predictions", json=BODY)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert "Every upstream provider of this model is failing" in refused.json()["detail"]
        assert api.get("/predictions").json()["results"] == []
    assert len(replicate_upstream.requests("POST", "/predictions")) == 2
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 2


@pytest.fixture
def two_gateways(tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream) -> Iterator[list[str]]:
    """Two `gateway serve` processes on one Redis of their own, with a breaker that opens after 3 failures."""
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    settings = {"breaker_failures": "3", "breaker_window_seconds": "30", "breaker_open_seconds": "1.5"}
    with (
        EmbeddedRedis(tmp_path / "redis") as server,
        gateway_process(server.url, catalog, tmp_path / "a", public_base_url="self", **settings) as (first, _, _),
        gateway_process(server.url, catalog, tmp_path / "b", public_base_url="self", **settings) as (second, _, _),
    ):
        yield [first, second]


def _key(gateway: str) -> str:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = httpx.post(f"{gateway}/admin/v1/keys", json={"tenant": "breakers"}, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def test_processes_share_one_breaker_and_one_probe_at_a_time(
    two_gateways: list[str], replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """Failures seen by two processes add up to open the breaker for both; once the open period is over, of many
    concurrent creates on both processes exactly one probes the still-failing route, which re-opens it."""
    replicate_upstream.controls.inject(Fault("create", status=500, times=1000))
    token = _key(two_gateways[0])

    def create(gateway: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        body = create_body("breakers")  # inline files: a gateway process of its own cannot resolve example hosts
        return httpx.post(f"{gateway}/v1/predictions", json=body, headers=headers, timeout=30).status_code

    assert [create(g) for g in (two_gateways[0], two_gateways[1], two_gateways[0])] == [201] * 3
    time.sleep(0.5)  # the opening is announced to the other process
    assert [create(g) for g in two_gateways * 2] == [201] * 4
    assert len(replicate_upstream.requests("POST", "/predictions")) == 3  # opened after the third, on both

    time.sleep(1.6)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, two_gateways * 8)) == [201] * 16
    assert len(replicate_upstream.requests("POST", "/predictions")) == 4  # one probe, which failed: open again
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 23
    admin = httpx.Client(base_url=f"{two_gateways[1]}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with admin:
        assert _primary_route(admin)["breaker"]["state"] == "open"
