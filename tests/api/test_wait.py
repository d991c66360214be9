"""`Prefer: wait`: the create answers with the finished prediction, or says `starting` when time runs out."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import replicate

from tests.conftest import INPAINTING, INPAINTING_VERSION, Gateway, Upstream, gateway_on_own_redis, inpainting_input
from tests.emulator import Fault


def test_a_prediction_that_finishes_in_time_comes_back_finished(api: httpx.Client) -> None:
    response = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"Prefer": "wait=5"}
    )
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "wait=5"
    body = response.json()
    assert body["status"] == "succeeded" and len(body["output"]) == 1 and body["completed_at"]
    assert response.headers["location"] == body["urls"]["get"]


def test_when_time_runs_out_a_running_prediction_is_reported_as_starting(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(run_seconds=5)
    start = time.monotonic()
    response = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"Prefer": "wait=1"}
    )
    elapsed = time.monotonic() - start
    assert 0.5 < elapsed < 1.5  # answered before the client gives up (its read timeout is n + 0.5 s)
    assert response.json()["status"] == "starting" and response.json()["output"] is None
    assert response.headers["preference-applied"] == "wait=1"
    assert api.get(f"/predictions/{response.json()['id']}").json()["status"] == "processing"


def test_waits_above_60_seconds_are_capped_and_odd_preferences_ignored(api: httpx.Client) -> None:
    capped = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"Prefer": "wait=70"}
    )
    assert capped.headers["preference-applied"] == "wait=60" and capped.json()["status"] == "succeeded"
    plain = api.post(
        "/predictions",
        json={"version": INPAINTING_VERSION, "input": inpainting_input()},
        headers={"Prefer": "respond-async, wait"},
    )
    assert plain.headers["preference-applied"] == "wait" and plain.json()["status"] == "succeeded"
    for prefer in ("wait=soon", "wait=0", "handling=lenient"):
        response = api.post(
            "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"Prefer": prefer}
        )
        assert response.status_code == 201 and "preference-applied" not in response.headers
        assert response.json()["status"] == "starting"


class _Counting(httpx.BaseTransport):
    def __init__(self) -> None:
        self.requests: list[str] = []
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return self._inner.handle_request(request)


def test_the_official_clients_run_needs_no_polling(gateway: Gateway, tenant_key: str) -> None:
    transport = _Counting()
    client = replicate.Client(api_token=tenant_key, base_url=gateway.url, transport=transport)
    output = client.run(INPAINTING, input=inpainting_input(num_outputs=2), use_file_output=False)
    assert len(output) == 2
    assert transport.requests == [f"POST /v1/models/{INPAINTING}/predictions"]


def test_a_hanging_upstream_read_does_not_stretch_the_wait_past_its_preference(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)  # only refreshes can learn anything
    replicate_upstream.controls.inject(Fault(route="get", delay=2.8, times=10))  # within the 3 s provider timeout
    start = time.monotonic()
    response = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"Prefer": "wait=1"}
    )
    assert time.monotonic() - start < 1.5  # the client's own read timeout is n + 0.5 s
    assert response.status_code == 201 and response.json()["status"] == "starting"


def test_a_read_of_a_stale_prediction_answers_the_stored_state_when_the_upstream_hangs(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    time.sleep(0.2)  # stale now: the next read tries the upstream
    replicate_upstream.controls.inject(Fault(route="get", delay=2.8, times=10))
    start = time.monotonic()
    read = api.get(f"/predictions/{created['id']}")
    assert time.monotonic() - start < 1.5
    assert read.status_code == 200 and read.json()["status"] == "starting"


def test_waits_on_an_upstream_that_calls_back_do_not_poll_it(
    replicate_upstream: Upstream, tmp_path: Path, catalog_path: Path
) -> None:
    """Thousands of held waits polled their upstreams once a second each (refresh_after_seconds), on top of
    the shared follow-ups; an upstream given a webhook reports itself, so waiters only listen."""
    replicate_upstream.controls.configure(run_seconds=2.5)
    # The follow-ups' first poll after the waits end: any read of these predictions below is a waiter's.
    with gateway_on_own_redis(tmp_path, catalog_path, poll_first_seconds=30) as (_, gateway):
        token, _ = gateway.new_key()
        body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=10"}

        def create(_: int) -> dict[str, Any]:
            return httpx.post(f"{gateway.url}/v1/predictions", json=body, headers=headers, timeout=20).json()

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(create, range(4)))
    assert [answer["status"] for answer in answers] == ["succeeded"] * 4  # the upstream's webhooks ended the waits
    upstream_ids = [prediction["id"] for prediction in replicate_upstream.controls.predictions()[-4:]]
    assert [len(replicate_upstream.requests("GET", f"/predictions/{upstream_id}")) for upstream_id in upstream_ids] == [0] * 4
