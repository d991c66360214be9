"""`Cancel-After` deadlines, the run time of predictions that did not succeed, and the prediction paths served at
the host root."""

import time
from typing import Any

import httpx
import pytest
import redis

from gateway.timestamps import parse_timestamp
from tests.conftest import INPAINTING_VERSION, Gateway, Upstream, inpainting_input
from tests.emulator import Fault

BODY = {"version": INPAINTING_VERSION, "input": inpainting_input()}


def _until(api: httpx.Client, prediction_id: str, statuses: set[str], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (body := api.get(f"/predictions/{prediction_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, f"still {body['status']} after {seconds}s"
        time.sleep(0.05)
    return body


@pytest.mark.parametrize(
    ("header", "seconds"), [("5", 5), ("30s", 30), ("5m", 300), ("1h30m45s", 5445), ("2h", 7200), ("1m0.5s", 60.5)]
)
def test_cancel_after_sets_the_deadline_from_creation(api: httpx.Client, header: str, seconds: float) -> None:
    created = api.post("/predictions", json=BODY, headers={"Cancel-After": header}).json()
    deadline, started = parse_timestamp(created["deadline"]), parse_timestamp(created["created_at"])
    assert deadline is not None and started is not None
    assert deadline - started == pytest.approx(seconds, abs=0.002)
    assert api.get(f"/predictions/{created['id']}").json()["deadline"] == created["deadline"]
    # Ended here: its deadline must not fire later, into another test's upstream (the emulator forgets its run).
    assert api.post(f"/predictions/{created['id']}/cancel").json()["status"] in ("canceled", "succeeded")


@pytest.mark.parametrize("header", ["4", "4s", "0m4s", "", "soon", "5x", "-10", "1d", "m", "5 s"])
def test_a_cancel_after_that_is_not_a_duration_of_at_least_5_seconds_is_refused(api: httpx.Client, header: str) -> None:
    response = api.post("/predictions", json=BODY, headers={"Cancel-After": header})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "Cancel-After" in response.json()["detail"]


def test_without_cancel_after_there_is_no_deadline(api: httpx.Client) -> None:
    assert "deadline" not in api.post("/predictions", json=BODY).json()


def test_a_prediction_running_past_its_deadline_is_cancelled_upstream_with_nobody_asking(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=60)
    created = api.post("/predictions", json=BODY, headers={"Cancel-After": "5s"}).json()
    assert _until(api, created["id"], {"processing"}, 5)["status"] == "processing"
    time.sleep(5.5)  # no reads meanwhile: only the deadline can end it
    body = _until(api, created["id"], {"canceled", "succeeded", "failed"}, 3)
    assert body["status"] == "canceled"
    assert [p["status"] for p in replicate_upstream.controls.predictions()] == ["canceled"]  # stopped there too
    completed, deadline = parse_timestamp(body["completed_at"]), parse_timestamp(created["deadline"])
    assert completed is not None and deadline is not None and deadline <= completed < deadline + 2


def test_a_prediction_finished_before_its_deadline_is_left_alone(
    api: httpx.Client, replicate_upstream: Upstream, redis_url: str
) -> None:
    created = api.post("/predictions", json=BODY, headers={"Cancel-After": "5"}).json()
    assert _until(api, created["id"], {"succeeded"}, 5)["status"] == "succeeded"
    time.sleep(5.5)
    assert api.get(f"/predictions/{created['id']}").json()["status"] == "succeeded"
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        upstream_id = client.hget(f"gw:pred:{{{created['id']}}}", "upstream_id")
    assert upstream_id and not replicate_upstream.requests("POST", f"/predictions/{upstream_id}/cancel")


def test_a_canceled_prediction_that_ran_reports_its_predict_time_and_one_that_never_started_does_not(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=60)
    running = api.post("/predictions", json=BODY).json()
    _until(api, running["id"], {"processing"}, 5)
    time.sleep(0.3)
    canceled = api.post(f"/predictions/{running['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["metrics"]["predict_time"] >= 0.3
    # An upstream that says nothing of the run time (its answer to the cancel is not final): the gateway counts it.
    running = api.post("/predictions", json=BODY).json()
    _until(api, running["id"], {"processing"}, 5)
    time.sleep(0.3)
    [upstream] = [p for p in replicate_upstream.controls.predictions() if p["status"] == "processing"]
    replicate_upstream.controls.inject(Fault(route="cancel", status=200, body=upstream))
    canceled = api.post(f"/predictions/{running['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["metrics"]["predict_time"] >= 0.3
    replicate_upstream.controls.configure(start_delay=60)
    queued = api.post("/predictions", json=BODY).json()
    canceled = api.post(f"/predictions/{queued['id']}/cancel").json()
    assert canceled["status"] == "canceled" and "started_at" not in canceled  # it never ran: left out, not null
    assert canceled["metrics"].get("predict_time", 0) == 0


def test_the_prediction_paths_are_also_served_at_the_host_root(gateway: Gateway, tenant_key: str) -> None:
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {tenant_key}"}) as root:
        created = root.post("/predictions", json={**BODY, "stream": True})
        assert created.status_code == 201, created.text
        url = f"{gateway.url}/predictions/{created.json()['id']}"
        assert created.json()["urls"]["get"] == url and created.headers["location"] == url
        assert root.get(url).json()["id"] == created.json()["id"]
        assert [p["id"] for p in root.get("/predictions").json()["results"]] == [created.json()["id"]]
        assert root.post(f"{url}/cancel").json()["status"] in ("canceled", "succeeded")
        assert root.get("/predictions/nosuch").status_code == 404
        assert httpx.get(f"{gateway.url}/predictions").status_code == 401
