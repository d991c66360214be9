"""Real Cog servers of the demo model behind the gateway: inpainting, queueing, cancel, crashes, files."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import pytest
import redis
import replicate

from gateway.providers.cog import CogProvider, split_upstream_id
from tests.cog.conftest import FAST_VERSION, SLOW_VERSION, CogGateway
from tests.images import data_uri, decode_png, mask_png, png_with_square

ORANGE, WHITE = (255, 128, 0), (255, 255, 255)
BOX = (24, 24, 40, 40)


def _image_input(**extra: Any) -> dict[str, Any]:
    image = png_with_square(64, 64, ORANGE, WHITE, BOX)
    return {"image": data_uri(image), "mask": data_uri(mask_png(64, 64, BOX)), "prompt": "fill it", **extra}


def _client(gateway: CogGateway, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{gateway.public_url}/v1",
        headers={"Authorization": f"Bearer {token}"},
        verify=gateway.client_ssl_context(),
        timeout=15,
    )


def _until(api: httpx.Client, prediction_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/predictions/{prediction_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"prediction {prediction_id} never reached {statuses}: {body}")


def _assert_inpainted(png: bytes) -> None:
    image = decode_png(png)
    centre = image.pixel(32, 32)
    assert all(abs(c - o) <= 40 for c, o in zip(centre, ORANGE, strict=True)), f"the masked square was not filled: {centre}"
    assert image.pixel(2, 2) == ORANGE


@pytest.fixture
def api(cog_gateway: CogGateway) -> httpx.Client:
    token, _ = cog_gateway.new_key()
    return _client(cog_gateway, token)


def test_a_prediction_inpaints_for_real_and_returns_short_gateway_urls(cog_gateway: CogGateway, api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": FAST_VERSION, "input": _image_input(num_outputs=2)})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "starting"
    done = _until(api, created.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert "Using seed" in done["logs"] and done["metrics"]["predict_time"] > 0
    assert len(done["output"]) == 2
    for url in done["output"]:
        assert url.startswith(f"{cog_gateway.public_url}/v1/files/") and len(url) < 300
        with httpx.Client(verify=cog_gateway.client_ssl_context()) as anonymous:
            _assert_inpainted(anonymous.get(url).content)
            assert anonymous.get(url, headers={"Authorization": "Bearer unrelated"}).status_code == 200
    # Under the aggregator prefix the same files are linked under that prefix, and read there.
    aggregated = api.get(f"{cog_gateway.public_url}/replicate/v1/predictions/{done['id']}").json()
    assert aggregated["output"] == [url.replace("/v1/files/", "/replicate/v1/files/", 1) for url in done["output"]]
    with httpx.Client(verify=cog_gateway.client_ssl_context()) as anonymous:
        _assert_inpainted(anonymous.get(aggregated["output"][0]).content)


def test_the_model_schema_comes_from_the_server_and_validates_before_dispatch(api: httpx.Client) -> None:
    version = api.get(f"/models/test/inpaint/versions/{FAST_VERSION}").json()
    assert version["openapi_schema"]["components"]["schemas"]["Input"]["required"] == ["image", "mask"]
    response = api.post(
        "/predictions", json={"version": FAST_VERSION, "input": {"image": _image_input()["image"], "num_outputs": 9}}
    )
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["invalid_fields"]} == {"input", "input.num_outputs"}


def test_a_model_exception_fails_the_prediction_with_its_error(api: httpx.Client) -> None:
    broken = {**_image_input(), "image": "data:image/png;base64,bm90IGFuIGltYWdl"}
    created = api.post("/predictions", json={"version": FAST_VERSION, "input": broken}).json()
    done = _until(api, created["id"], {"succeeded", "failed"})
    assert done["status"] == "failed" and done["error"]


def test_twenty_concurrent_predictions_share_two_servers_without_a_409(cog_gateway: CogGateway, api: httpx.Client) -> None:
    token = api.headers["authorization"].split()[1]
    results: list[httpx.Response] = []

    def create() -> None:
        with _client(cog_gateway, token) as client:
            results.append(client.post("/predictions", json={"version": FAST_VERSION, "input": _image_input()}))

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [201] * 20
    finished = [_until(api, r.json()["id"], {"succeeded", "failed", "canceled"}, timeout=60) for r in results]
    assert [p["status"] for p in finished] == ["succeeded"] * 20
    assert all(p["logs"].count("Using seed") == 1 for p in finished)  # each ran exactly once
    servers = {split_upstream_id(_stored(cog_gateway, p["id"]))[0] for p in finished}
    assert len(servers) == 2


def _stored(gateway: CogGateway, prediction_id: str) -> str:
    """The upstream id the gateway keeps for a prediction: `<server url>|<id>`."""
    client = redis.Redis.from_url(str(gateway.settings.redis_url), decode_responses=True)
    try:
        return str(client.hget(f"gw:pred:{{{prediction_id}}}", "upstream_id"))
    finally:
        client.close()


def test_cancel_while_running_stops_the_run_and_frees_the_server(cog_gateway: CogGateway, api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json()
    _until(api, created["id"], {"processing"})
    canceled = api.post(f"/predictions/{created['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    server = split_upstream_id(_stored(cog_gateway, created["id"]))[0]
    deadline = time.monotonic() + 5
    while httpx.get(f"{server}/health-check").json()["status"] != "READY":
        assert time.monotonic() < deadline, "the server kept running the canceled prediction"
        time.sleep(0.1)


def test_a_queued_prediction_can_be_canceled_before_it_runs(api: httpx.Client) -> None:
    running = [api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json() for _ in range(2)]
    queued = api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json()
    time.sleep(0.5)
    assert api.get(f"/predictions/{queued['id']}").json()["status"] == "starting"
    assert api.post(f"/predictions/{queued['id']}/cancel").json()["status"] == "canceled"
    for prediction in running:
        api.post(f"/predictions/{prediction['id']}/cancel")
    time.sleep(1.5)
    after = api.get(f"/predictions/{queued['id']}").json()
    assert after["status"] == "canceled" and after["logs"] == ""


def test_a_server_killed_mid_prediction_fails_it_with_a_clear_error(cog_gateway: CogGateway, api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json()
    _until(api, created["id"], {"processing"})
    server = split_upstream_id(_stored(cog_gateway, created["id"]))[0]
    pools = [p.pool for p in cog_gateway.services.providers.values() if isinstance(p, CogProvider) and p.pool is not None]
    pool = next(p for p in pools if server in [s.url for s in p.servers])
    pid = pool.pid(server)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = _until(api, created["id"], {"failed", "succeeded", "canceled"}, timeout=15)
    assert failed["status"] == "failed"
    assert "model server" in failed["error"]
    assert time.monotonic() - killed_at < 10


def test_the_replicate_client_runs_with_a_file_input_and_reads_the_file_output(cog_gateway: CogGateway, tmp_path: Any) -> None:
    token, _ = cog_gateway.new_key()
    image = tmp_path / "image.png"
    image.write_bytes(png_with_square(64, 64, ORANGE, WHITE, BOX))
    mask = tmp_path / "mask.png"
    mask.write_bytes(mask_png(64, 64, BOX))
    # PY 1.0.7 wraps the transport it is given in its retrying one; that is where TLS trust is set.
    transport = httpx.HTTPTransport(verify=cog_gateway.client_ssl_context())
    client = replicate.Client(api_token=token, base_url=cog_gateway.public_url, transport=transport)
    with image.open("rb") as image_file, mask.open("rb") as mask_file:
        output = client.run(f"test/inpaint:{FAST_VERSION}", input={"image": image_file, "mask": mask_file, "steps": 5})
    assert isinstance(output, list) and len(output) == 1
    assert isinstance(output[0], replicate.helpers.FileOutput)
    _assert_inpainted(output[0].read())


def test_a_prediction_claimed_by_a_dispatcher_that_died_is_run_by_another(cog_gateway: CogGateway, api: httpx.Client) -> None:
    running = [api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json() for _ in range(2)]
    for prediction in running:
        _until(api, prediction["id"], {"processing"})
    queued = api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json()
    client = redis.Redis.from_url(str(cog_gateway.settings.redis_url), decode_responses=True)
    tenant = api.get("/account").json()["username"]
    try:  # as if a dispatcher in another gateway process took it from the queue and then crashed
        assert client.lrem(f"gw:queue:{{cog-slow}}:tenant:{tenant}", 1, queued["id"]) == 1
        client.lrem("gw:queue:{cog-slow}:ring", 0, tenant)  # its tenant has nothing else waiting
        client.rpush("gw:queue:{cog-slow}:claimed:crashed", queued["id"])
        client.sadd("gw:queue:{cog-slow}:consumers", "crashed")
    finally:
        client.close()
    done = _until(api, queued["id"], {"succeeded", "failed", "canceled"}, timeout=30)
    assert done["status"] == "succeeded" and done["logs"].count("Using seed") == 1


def test_a_run_past_its_deadline_is_stopped_and_failed(cog_gateway: CogGateway, api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json()
    _until(api, created["id"], {"processing"})
    upstream_id = _stored(cog_gateway, created["id"])
    client = redis.Redis.from_url(str(cog_gateway.settings.redis_url), decode_responses=True)
    try:  # as if its run timeout had passed
        assert client.zadd("gw:queue:{cog-slow}:running", {upstream_id: 0}, xx=True, ch=True) == 1
    finally:
        client.close()
    failed = _until(api, created["id"], {"failed", "succeeded", "canceled"}, timeout=10)
    assert (failed["status"], failed["error"]) == ("failed", "The prediction did not finish within 600s")
    server = split_upstream_id(upstream_id)[0]
    assert httpx.get(f"{server}/health-check").json()["status"] in ("READY", "BUSY")


def test_prefer_wait_returns_the_finished_inpainting_woken_by_the_servers_webhook(api: httpx.Client) -> None:
    response = api.post("/predictions", json={"version": FAST_VERSION, "input": _image_input()}, headers={"Prefer": "wait=10"})
    assert response.status_code == 201 and response.headers["preference-applied"] == "wait=10"
    assert response.json()["status"] == "succeeded" and len(response.json()["output"]) == 1


def _gauge(text: str, name: str, labels: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(f"{name}{{{labels}}} ")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_metrics_show_the_slot_queue_and_time_calls_to_the_cog_servers_by_provider(
    cog_gateway: CogGateway, api: httpx.Client
) -> None:
    def scrape() -> str:
        return httpx.get(f"{cog_gateway.url}/metrics", timeout=5).text

    def creates(text: str) -> float:
        return _gauge(text, "gateway_upstream_request_duration_seconds_count", 'operation="create",provider="cog-slow"')

    before = scrape()
    created = [api.post("/predictions", json={"version": SLOW_VERSION, "input": _image_input()}).json() for _ in range(3)]
    _until(api, created[0]["id"], {"processing"})
    _until(api, created[1]["id"], {"processing"})
    during = scrape()  # two servers run two; the third waits its turn
    slots = {
        state: _gauge(during, "gateway_slot_queue_items", f'provider="cog-slow",state="{state}"')
        for state in ("waiting", "dispatching", "running")
    }
    assert slots == {"waiting": 1, "dispatching": 0, "running": 2}
    assert creates(during) - creates(before) == 2
    assert _gauge(during, "gateway_slot_queue_items", 'provider="cog-fast",state="waiting"') == 0
    assert _gauge(scrape(), "gateway_upstream_request_duration_seconds_count", 'operation="health",provider="cog-slow"') > 0
    for prediction in created:
        api.post(f"/predictions/{prediction['id']}/cancel")
