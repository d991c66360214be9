"""Prediction state lives in Redis: round trips per request, staleness-driven refresh, webhooks, retention."""

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio.connection import AbstractConnection

from gateway.store.deliveries import STREAM as DELIVERY_STREAM
from tests.conftest import (
    INPAINTING_VERSION,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator import Fault
from tests.servers import free_port

# A schedule's claim, sent on its own: an EVALSHA whose one key is the schedule. (A create's pipeline schedules its
# follow-up beside a script of its own, and is counted.)
_SCHEDULE_CLAIM = re.compile(rb"\*\d+\r\n\$7\r\nEVALSHA\r\n\$40\r\n[0-9a-f]{40}\r\n\$1\r\n1\r\n\$\d+\r\ngw:schedule:")


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts what a gateway sends to the Redis on port `counter[1]`: one packed write per round trip (a pipeline
    is one)."""
    counter = [0, 0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        packed = b"".join(command) if isinstance(command, list | tuple) else command
        # The webhook worker polls its stream, and the schedules' workers claim due work, in the background,
        # whatever the requests do: not counted.
        background = isinstance(packed, bytes) and (DELIVERY_STREAM.encode() in packed or _SCHEDULE_CLAIM.match(packed))
        mine = getattr(self, "port", None) == counter[1]
        if threading.current_thread() is not threading.main_thread() and mine and not background:
            counter[0] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield counter


def test_create_costs_two_round_trips_and_get_one(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream, round_trips: list[int]
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)  # no upstream callbacks: count only the request's own work
    # A Redis of its own, whose only predictions are this test's, not followed up within the test.
    with (
        gateway_on_own_redis(tmp_path, catalog_path, poll_first_seconds=3600) as (server, gateway),
        gateway.client(gateway.new_key()[0]) as api,
    ):
        round_trips[1] = server.port  # the suite's other gateways work on in the background, on another Redis
        body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        api.post("/predictions", json=body)  # key cached, scripts loaded
        round_trips[0] = 0
        created = api.post("/predictions", json=body).json()
        assert round_trips[0] == 2
        round_trips[0] = 0
        assert api.get(f"/predictions/{created['id']}").status_code == 200
        assert round_trips[0] == 1


def test_an_idempotency_key_adds_one_round_trip_to_a_create_and_a_repeat_costs_two(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream, round_trips: list[int]
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    with (
        gateway_on_own_redis(tmp_path, catalog_path, poll_first_seconds=3600, refresh_after_seconds=3600) as (server, gateway),
        gateway.client(gateway.new_key()[0]) as api,
    ):
        round_trips[1] = server.port
        body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        api.post("/predictions", json=body, headers={"Idempotency-Key": "warm-up"})  # key cached, scripts loaded
        round_trips[0] = 0
        created = api.post("/predictions", json=body, headers={"Idempotency-Key": "k"})
        assert created.status_code == 201 and round_trips[0] == 3  # the claim; the key's prediction rides the record
        round_trips[0] = 0
        repeated = api.post("/predictions", json=body, headers={"Idempotency-Key": "k"})
        assert repeated.json()["id"] == created.json()["id"] and round_trips[0] == 2  # the claim, the record read


def test_limits_and_metering_add_no_round_trip_to_a_create(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream, round_trips: list[int]
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    every_limit = {
        "creates_per_minute": 3,
        "concurrent_predictions": 10,
        "budget": {"amount": "100", "period": "month"},
        "prepaid": True,
    }
    own = gateway_on_own_redis(tmp_path, catalog_path, poll_first_seconds=3600, refresh_after_seconds=3600)
    with own as (server, gateway):
        token, key = gateway.new_key()
        gateway.admin.put(f"/tenants/{key['tenant']}/limits", json=every_limit)
        gateway.admin.put(f"/keys/{key['key_id']}/limits", json=every_limit)
        gateway.admin.post(f"/tenants/{key['tenant']}/balance", json={"amount": "10"})
        gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": "10"})
        round_trips[1] = server.port
        body = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        with gateway.client(token) as api:
            api.post("/predictions", json=body)  # key and limits cached, scripts loaded
            round_trips[0] = 0
            created = api.post("/predictions", json=body)
            assert created.status_code == 201 and round_trips[0] == 2  # the check rides the record's write
            api.post("/predictions", json=body)
            round_trips[0] = 0
            refused = api.post("/predictions", json=body)
            assert refused.status_code == 429 and round_trips[0] == 2  # the check, then the record removed
            round_trips[0] = 0
            assert api.get(f"/predictions/{created.json()['id']}").status_code == 200
            assert round_trips[0] == 1  # no read rate: nothing to check
            gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"reads_per_minute": 100})
            time.sleep(0.5)  # the change reaches the process's cache over pub/sub
            api.get("/predictions")  # limits cached again, the read script loaded
            round_trips[0] = 0
            assert api.get(f"/predictions/{created.json()['id']}").status_code == 200
            assert round_trips[0] == 1  # a read rate applies: its count rides the record's read


def test_a_fresh_record_is_answered_from_redis_without_asking_the_upstream(
    redis_url: str, catalog_path: Path, tmp_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)  # only the gateway's own reads may ask the upstream
    refresh_after = 0.5  # the session gateway's 0.1 s leaves too little time to read a record while fresh
    settings = gateway_settings(
        redis_url, catalog_path, free_port(), files_dir=tmp_path / "files", refresh_after_seconds=refresh_after
    )
    with run_gateway(settings) as gateway, gateway.client(gateway.new_key()[0]) as api:
        replicate_upstream.controls.inject(Fault(route="get", status=500, times=100))
        creating = time.monotonic()
        created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
        created_at = time.monotonic()
        [upstream] = replicate_upstream.controls.predictions()

        def upstream_reads() -> int:
            return len(replicate_upstream.requests("GET", f"/predictions/{upstream['id']}"))

        for _ in range(5):
            assert api.get(f"/predictions/{created['id']}").json()["status"] == "starting"
        assert time.monotonic() - creating < refresh_after, "the reads did not all happen while the record was fresh"
        assert upstream_reads() == 0
        # Stale now, and the upstream fails: one read asks it once, and still gets the stored state.
        time.sleep(max(0.0, created_at + refresh_after + 0.05 - time.monotonic()))
        assert api.get(f"/predictions/{created['id']}").json()["status"] == "starting"
        assert upstream_reads() == 1


def test_concurrent_readers_of_a_stale_record_share_one_upstream_refresh(
    gateway: Gateway, tenant_key: str, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    with gateway.client(tenant_key) as api:
        created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    time.sleep(0.15)
    replicate_upstream.controls.inject(Fault(route="get", delay=0.5, times=100))
    url = f"{gateway.url}/v1/predictions/{created['id']}"
    statuses: list[int] = []

    def read() -> None:
        statuses.append(httpx.get(url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=10).status_code)

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert statuses == [200] * 8
    [upstream] = replicate_upstream.controls.predictions()
    assert len(replicate_upstream.requests("GET", f"/predictions/{upstream['id']}")) == 1


def test_an_upstream_webhook_makes_the_gateway_refresh_without_being_polled(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream, redis_url: str, request: pytest.FixtureRequest
) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    [sent] = replicate_upstream.requests("POST", "/v1/predictions")
    assert sent.json["webhook"].startswith(f"{gateway.url}/webhooks/upstream/{created['id']}?token=")
    assert sent.json["webhook_events_filter"] == ["start", "output", "logs", "completed"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    request.addfinalizer(client.close)
    deadline = time.monotonic() + 5
    while client.hget(f"gw:pred:{{{created['id']}}}", "status") != "succeeded":
        assert time.monotonic() < deadline, "the completed webhook did not update the record"
        time.sleep(0.05)
    forged = httpx.post(f"{gateway.url}/webhooks/upstream/{created['id']}?token=forged", json={"status": "failed"})
    assert forged.status_code == 404


def test_an_upstream_answer_older_than_the_stored_progress_leaves_the_logs_as_they_were(
    api: httpx.Client, replicate_upstream: Upstream, redis_url: str, request: pytest.FixtureRequest
) -> None:
    replicate_upstream.controls.configure(run_seconds=1)  # a progress line every 0.25 s, done after 1 s
    replicate_upstream.controls.drop_webhooks(True)  # the test delivers the upstream's callbacks itself
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    [sent] = replicate_upstream.requests("POST", "/v1/predictions")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    request.addfinalizer(client.close)

    def upstream_now() -> dict[str, Any]:
        [prediction] = replicate_upstream.controls.predictions()
        return prediction

    def upstream_processing() -> dict[str, Any] | None:
        prediction = upstream_now()
        return prediction if prediction["status"] == "processing" else None

    def stored_doc() -> dict[str, Any]:
        return json.loads(client.hget(f"gw:pred:{{{created['id']}}}", "doc") or "{}")

    early = _until(upstream_processing, "the upstream never started")
    _until(lambda: "1/4" in upstream_now()["logs"], "the upstream logged no progress")
    assert httpx.post(sent.json["webhook"], json=upstream_now()).status_code == 204
    progressed = stored_doc()
    assert progressed["status"] == "processing"
    assert progressed["logs"].startswith(early["logs"]) and len(progressed["logs"]) > len(early["logs"])
    # The next answer the gateway reads is the earlier progress (a reordered or lagging report).
    upstream_reads = replicate_upstream.requests("GET", f"/predictions/{early['id']}")
    replicate_upstream.controls.inject(Fault(route="get", status=200, body=early))
    assert httpx.post(sent.json["webhook"], json=early).status_code == 204
    assert len(replicate_upstream.requests("GET", f"/predictions/{early['id']}")) == len(upstream_reads) + 1
    assert stored_doc()["logs"] == progressed["logs"]


def test_records_and_index_expire_with_the_retention_period(
    api: httpx.Client, redis_url: str, gateway: Gateway, request: pytest.FixtureRequest
) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    request.addfinalizer(client.close)
    retention = gateway.settings.prediction_retention_seconds
    assert retention - 5 < client.ttl(f"gw:pred:{{{created['id']}}}") <= retention
    tenant = api.get("/account").json()["username"]
    index = f"gw:tenant:{{{tenant}}}:predictions"
    assert [member.split(":")[1] for member in client.zrange(index, 0, -1)] == [created["id"]]
    assert retention - 5 < client.ttl(index) <= retention


def _until(condition: Callable[[], Any], failure: str, seconds: float = 5) -> Any:
    """The first true value of `condition`, polled until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)
    return value
