"""Failover between a version's routes: the next route takes a create only when the failed one cannot have
started a prediction; when it may have (its answer was lost), the gateway asks it instead, so that one create
never runs twice upstream, and a prediction that runs is never dropped."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import (
    INPAINTING_VERSION,
    TEST_CATALOG,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator import Fault
from tests.servers import free_port

BODY = {"version": INPAINTING_VERSION, "input": inpainting_input()}
UPSTREAM_TIMEOUT = 3  # the test catalog's providers give up on an answer after this many seconds


def _catalog(tmp_path: Path, replicate: Upstream, aggregator: Upstream, primary_url: str | None = None) -> Path:
    """The suite's catalog with inpainting routed to `replicate` (or whatever listens at `primary_url`), then to
    the aggregator."""
    text = TEST_CATALOG.replace("{replicate}", primary_url or replicate.url).replace("{aggregator}", aggregator.url)
    route = f'routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]'
    assert route in text
    routes = (
        f'routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}, '
        f'{{ provider = "aggregator", version = "{INPAINTING_VERSION}" }}]'
    )
    path = tmp_path / "catalog.toml"
    path.write_text(text.replace(route, routes, 1))
    return path


@pytest.fixture
def gateway_with_routes(
    tmp_path: Path, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> Iterator[Gateway]:
    settings = gateway_settings(redis_url, _catalog(tmp_path, replicate_upstream, aggregator_upstream), free_port())
    with run_gateway(settings) as gateway:
        yield gateway


def _stored_route(redis_url: str, prediction_id: str) -> str:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return str(client.hget(f"gw:pred:{{{prediction_id}}}", "route"))


def _upstream_predictions_for(upstream: Upstream, prefix: str, prediction_id: str) -> list[dict[str, Any]]:
    """The upstream's predictions that report to the gateway prediction's webhook."""
    headers = {"Authorization": f"Bearer {UPSTREAM_TOKEN}"}
    listed = httpx.get(f"{upstream.url}{prefix}/predictions", headers=headers, timeout=10).json()["results"]
    return [p for p in listed if f"/webhooks/upstream/{prediction_id}?" in (p.get("webhook") or "")]


def _finished(api: httpx.Client, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        prediction: dict[str, Any] = api.get(f"/predictions/{prediction_id}").json()
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return prediction
        time.sleep(0.1)
    raise AssertionError(f"prediction {prediction_id} did not finish")


@pytest.mark.parametrize("status", [500, 503, 404, 401])
def test_an_error_answer_hands_the_create_to_the_next_route_once(
    gateway_with_routes: Gateway, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream, status: int
) -> None:
    replicate_upstream.controls.inject(Fault("create", status=status))
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY)
        assert created.status_code == 201, created.text
        prediction = _finished(api, created.json()["id"])
    assert prediction["status"] == "succeeded"
    assert len(replicate_upstream.requests("POST", "/predictions")) == 1
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 1
    assert _stored_route(redis_url, prediction["id"]) == f"aggregator:version:{INPAINTING_VERSION}"


def test_a_route_whose_credentials_are_all_rate_limited_hands_the_create_on(
    tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """A 429 sets the route's only token aside (on a Redis of its own: the cooling is shared by every gateway
    on a Redis); this create and the next go to the next route, the second without asking the first."""
    replicate_upstream.controls.inject(Fault("create", status=429, retry_after=30))
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    with gateway_on_own_redis(tmp_path, catalog) as (_, gateway), gateway.client(gateway.new_key()[0]) as api:
        for _ in range(2):
            created = api.post("/predictions", json=BODY)
            assert created.status_code == 201, created.text
    assert len(replicate_upstream.requests("POST", "/predictions")) == 1
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 2


def test_an_unreachable_route_is_passed_over(
    tmp_path: Path, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream, primary_url=closed)
    with run_gateway(gateway_settings(redis_url, catalog, free_port())) as gateway, gateway.client(gateway.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY)
        assert created.status_code == 201, created.text
        assert _finished(api, created.json()["id"])["status"] == "succeeded"
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 1


def test_a_refused_input_is_not_retried_elsewhere(
    gateway_with_routes: Gateway, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """An upstream 422 refuses the request itself: any route would, so none other is asked."""
    replicate_upstream.controls.inject(Fault("create", status=422, body={"detail": "bad input", "status": 422}))
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        refused = api.post("/predictions", json=BODY)
        assert refused.status_code == 502 and "rejected the prediction" in refused.json()["detail"]
        assert api.get("/predictions").json()["results"] == []
    assert aggregator_upstream.requests("POST", "/predictions") == []


def test_every_route_failing_is_the_last_error_and_leaves_nothing(
    gateway_with_routes: Gateway, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    replicate_upstream.controls.inject(Fault("create", status=500))
    aggregator_upstream.controls.inject(Fault("create", status=503, retry_after=7))
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        refused = api.post("/predictions", json=BODY)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert api.get("/predictions").json()["results"] == []


def test_a_create_whose_answer_is_lost_is_found_upstream_not_run_twice(
    gateway_with_routes: Gateway, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """The upstream takes the create but answers after the gateway gave up: the gateway looks the prediction up
    and serves it from there; the next route is never asked."""
    replicate_upstream.controls.inject(Fault("create", delay=UPSTREAM_TIMEOUT + 1))
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY, timeout=30)
        assert created.status_code == 201, created.text
        prediction = _finished(api, created.json()["id"])
    assert prediction["status"] == "succeeded"
    assert aggregator_upstream.requests("POST", "/predictions") == []
    assert len(_upstream_predictions_for(replicate_upstream, "/v1", prediction["id"])) == 1
    assert _stored_route(redis_url, prediction["id"]) == f"replicate:version:{INPAINTING_VERSION}"


def test_a_create_that_surely_never_started_goes_to_the_next_route(
    gateway_with_routes: Gateway, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """The connection drops before any answer, and the upstream's list shows no such prediction: the next route
    takes it, once."""
    replicate_upstream.controls.inject(Fault("create", drop_connection=True))
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY, timeout=30)
        assert created.status_code == 201, created.text
        prediction = _finished(api, created.json()["id"])
    assert prediction["status"] == "succeeded"
    assert len(replicate_upstream.requests("GET", "/v1/predictions")) >= 1  # it was asked first
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 1
    assert _upstream_predictions_for(replicate_upstream, "/v1", prediction["id"]) == []
    assert _stored_route(redis_url, prediction["id"]) == f"aggregator:version:{INPAINTING_VERSION}"


def test_a_lost_answer_the_upstream_cannot_explain_keeps_the_prediction_until_it_can(
    tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """The answer is lost and the upstream's list fails too: the prediction is kept (it may run and cost money)
    rather than dropped or sent elsewhere, and is adopted once the upstream can be asked.

    On a Redis of its own: the follow-ups that ask again are shared by every gateway on a Redis, and the suite's
    other gateways have catalogs and secrets of their own."""
    replicate_upstream.controls.inject(Fault("create", delay=UPSTREAM_TIMEOUT + 1))
    replicate_upstream.controls.inject(Fault("list", status=500, times=3))
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    with gateway_on_own_redis(tmp_path, catalog) as (_, gateway), gateway.client(gateway.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY, timeout=30)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "starting"
        prediction = _finished(api, created.json()["id"])
    assert prediction["status"] == "succeeded"
    assert aggregator_upstream.requests("POST", "/predictions") == []
    assert len(_upstream_predictions_for(replicate_upstream, "/v1", prediction["id"])) == 1


def test_a_create_taken_after_the_gateway_moved_on_is_canceled_there(
    gateway_with_routes: Gateway, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    """The first route takes the create only after every lookup showed nothing and the second route ran it: its
    late prediction reports to the gateway's webhook, which finds it a duplicate and cancels it upstream."""
    replicate_upstream.controls.configure(run_seconds=5)
    replicate_upstream.controls.inject(Fault("create", delay=UPSTREAM_TIMEOUT + 3))  # after the lookups (~2 s)
    with gateway_with_routes.client(gateway_with_routes.new_key()[0]) as api:
        created = api.post("/predictions", json=BODY, timeout=30)
        assert created.status_code == 201, created.text
        assert _finished(api, created.json()["id"])["status"] == "succeeded"
        deadline = time.monotonic() + 15
        while not (late := _upstream_predictions_for(replicate_upstream, "/v1", created.json()["id"])):
            assert time.monotonic() < deadline, "the first route never took the create"
            time.sleep(0.2)
        while late[0]["status"] != "canceled":
            assert time.monotonic() < deadline, late
            time.sleep(0.2)
            late = _upstream_predictions_for(replicate_upstream, "/v1", created.json()["id"])
        assert api.get(f"/predictions/{created.json()['id']}").json()["status"] == "succeeded"
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 1
