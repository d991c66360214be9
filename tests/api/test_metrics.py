import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    INPAINTING,
    INPAINTING_VERSION,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    inpainting_input,
)
from tests.emulator.controls import Fault


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if not labels and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            if ",".join(sorted(series[len(name) + 1 : -1].split(","))) == wanted:
                return float(value)
    return 0.0


def test_metrics_count_requests_creations_and_each_terminal_status_once(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    before = httpx.get(f"{gateway.url}/metrics").text
    replicate_upstream.controls.fail_next("boom")
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    deadline = time.monotonic() + 10
    while api.get(f"/predictions/{created['id']}").json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.get(f"/predictions/{created['id']}")  # reads after the end change nothing
    assert httpx.get(f"{gateway.url}/no/such/path").status_code == 404
    after = httpx.get(f"{gateway.url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")

    def increase(name: str, **labels: str) -> float:
        return _sample(after.text, name, **labels) - _sample(before, name, **labels)

    labels = {"model": INPAINTING, "provider": "replicate"}
    assert increase("gateway_predictions_created_total", **labels) == 1
    assert increase("gateway_predictions_finished_total", **labels, status="failed") == 1
    assert increase("gateway_http_requests_total", route="/v1/predictions", method="POST", status="201") == 1
    assert increase("gateway_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert "gwk_" not in after.text and "t-" not in after.text  # no keys or tenants in labels


def _scrape(gateway: Gateway) -> str:
    response = httpx.get(f"{gateway.url}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def _series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of `name`."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = line[len(name) + 1 : line.rindex("}")]
            found.append(dict(pair.split("=", 1) for pair in labels.replace('"', "").split(",")))
    return found


def _wait_for_status(api: httpx.Client, prediction_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while api.get(f"/predictions/{prediction_id}").json()["status"] != status:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_requests_are_labelled_by_route_template_under_each_mount_and_unknown_paths_share_one_label(
    gateway: Gateway, api: httpx.Client, tenant_key: str
) -> None:
    before = _scrape(gateway)
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    api.get(f"/predictions/{created['id']}")
    with gateway.client(tenant_key, "/replicate/v1") as aggregator_path:
        aggregator_path.get(f"/predictions/{created['id']}")
    for scanned in ("/wp-admin/setup.php", f"/.env.{uuid.uuid4().hex}", "/v1/no-such-resource"):
        assert httpx.get(gateway.url + scanned).status_code == 404
    assert httpx.request("PROPFIND", f"{gateway.url}/health").status_code == 405
    after = _scrape(gateway)

    def increase(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    get = {"route": "/v1/predictions/{prediction_id}", "method": "GET"}
    assert increase("gateway_http_requests_total", **get, status="200") == 1
    assert increase("gateway_http_request_duration_seconds_count", **get, status_class="2xx") == 1
    assert (
        increase(
            "gateway_http_request_duration_seconds_count",
            route="/replicate/v1/predictions/{prediction_id}",
            method="GET",
            status_class="2xx",
        )
        == 1
    )
    assert increase("gateway_http_requests_total", route="unmatched", method="GET", status="404") == 3
    assert increase("gateway_http_requests_total", route="/health", method="other", status="405") == 1
    routes = {labels["route"] for labels in _series(after, "gateway_http_requests_total")}
    assert not {r for r in routes if r != "unmatched" and not r.startswith("/")}
    assert created["id"] not in after and "wp-admin" not in after and "no-such-resource" not in after
    assert "PROPFIND" not in after


def test_an_upstream_call_is_timed_by_provider_and_operation_without_its_address(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    before = _scrape(gateway)
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
    assert created.status_code == 201
    after = _scrape(gateway)
    create = {"provider": "replicate", "operation": "create"}
    count = "gateway_upstream_request_duration_seconds_count"
    assert _sample(after, count, **create) - _sample(before, count, **create) == 1
    seconds = "gateway_upstream_request_duration_seconds_sum"
    assert 0 < _sample(after, seconds, **create) - _sample(before, seconds, **create) < 3
    address = replicate_upstream.url.split("//")[1]
    assert address not in after and UPSTREAM_TOKEN not in after


@pytest.fixture(scope="module")
def quiet_gateway(tmp_path_factory: pytest.TempPathFactory, catalog_path: Path) -> Iterator[Gateway]:
    """A gateway on a Redis of its own: no earlier test's predictions, so no background calls to the upstream."""
    with gateway_on_own_redis(tmp_path_factory.mktemp("quiet"), catalog_path) as (_, gateway):
        yield gateway


@pytest.mark.parametrize(
    "fault,kind",
    [
        (Fault(route="create", delay=4, status=500), "timeout"),  # past the provider's 3 s timeout, and never created
        (Fault(route="create", drop_connection=True), "connection"),
        (Fault(route="create", status=500), "http_5xx"),
        (Fault(route="create", status=401), "http_4xx"),
        (Fault(route="create", status=429, retry_after=1), "http_429"),  # last: sets the only token aside for 1 s
    ],
)
def test_a_failed_upstream_call_is_counted_as_an_error_of_its_kind(
    quiet_gateway: Gateway, replicate_upstream: Upstream, fault: Fault, kind: str
) -> None:
    before = _scrape(quiet_gateway)
    replicate_upstream.controls.inject(fault)
    with quiet_gateway.client(quiet_gateway.new_key()[0]) as api:
        body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        assert api.post("/predictions", json=body).status_code >= 500
    after = _scrape(quiet_gateway)
    errors = "gateway_upstream_errors_total"
    counted = {
        labels["kind"]: _sample(after, errors, **labels) - _sample(before, errors, **labels)
        for labels in _series(after, errors)
        if labels["provider"] == "replicate"
    }
    assert {k: v for k, v in counted.items() if v} == {kind: 1}
    count = "gateway_upstream_request_duration_seconds_count"
    create = {"provider": "replicate", "operation": "create"}
    assert _sample(after, count, **create) - _sample(before, count, **create) == 1


def test_queue_depths_are_read_from_redis_at_scrape_time(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(start_delay=0.05, run_seconds=30)  # they stay unfinished meanwhile
    with gateway_on_own_redis(tmp_path, catalog_path) as (_, gateway):
        token, _ = gateway.new_key()
        with gateway.client(token) as api:
            assert _sample(_scrape(gateway), "gateway_queue_depths_up") == 1
            ids = []
            for cancel_after in ("5m", "10m", None):
                headers = {"Cancel-After": cancel_after} if cancel_after else {}
                body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
                ids.append(api.post("/predictions", json=body, headers=headers).json()["id"])
            text = _scrape(gateway)
            assert _sample(text, "gateway_schedule_items", schedule="follow_ups") == 3
            assert _sample(text, "gateway_schedule_items", schedule="deadlines") == 2
            assert _sample(text, "gateway_schedule_overdue_items", schedule="deadlines") == 0
            assert "gateway_webhook_deliveries_pending 0.0" in text and "gateway_webhook_deliveries_lag 0.0" in text
            for prediction_id in ids:
                api.post(f"/predictions/{prediction_id}/cancel")


def test_metrics_answer_quickly_without_depths_while_redis_is_down_and_count_its_errors(
    tmp_path: Path, catalog_path: Path
) -> None:
    with gateway_on_own_redis(tmp_path, catalog_path, key_cache_seconds=0) as (server, gateway):
        token, _ = gateway.new_key()
        assert "gateway_schedule_items{" in _scrape(gateway)
        server.stop()
        with gateway.client(token) as api:
            assert api.get("/predictions/abc").status_code == 503
        started = time.monotonic()
        down = _scrape(gateway)
        assert time.monotonic() - started < 2
        assert _sample(down, "gateway_queue_depths_up") == 0
        assert "gateway_schedule_items{" not in down and "gateway_webhook_deliveries_lag " not in down
        assert _sample(down, "gateway_redis_errors_total", kind="connection") >= 1, [
            line for line in down.splitlines() if "redis" in line
        ]
        assert "gateway_http_requests_total{" in down  # the process's own series are all there
        server.start()
        deadline = time.monotonic() + 10
        while _sample(_scrape(gateway), "gateway_queue_depths_up") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_metrics_answer_within_the_depth_timeout_while_redis_is_paused(tmp_path: Path, catalog_path: Path) -> None:
    with gateway_on_own_redis(tmp_path, catalog_path) as (server, gateway):
        assert _sample(_scrape(gateway), "gateway_queue_depths_up") == 1
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)  # connections stay open and nothing answers
        try:
            started = time.monotonic()
            paused = _scrape(gateway)
            assert time.monotonic() - started < 2
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert _sample(paused, "gateway_queue_depths_up") == 0 and "gateway_schedule_items{" not in paused
