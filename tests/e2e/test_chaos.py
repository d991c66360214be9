"""Chaos: Redis paused and restarted under load, an upstream that hangs, resets and answers garbage, and a
gateway process killed with SIGKILL mid-create. Real processes and servers only. After each: no prediction a
client got a 201 for is lost, none was created twice upstream, errors were quick problem+json (never a 500),
and everything recovers without an operator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import (
    INPAINTING_VERSION,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    gateway_process,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator import Fault
from tests.servers import free_port

PROBLEM = "application/problem+json"
CREATE = {"version": INPAINTING_VERSION, "input": inpainting_input()}
LOOPBACK_CREATE = {  # for a gateway process, which resolves names through DNS rather than the suite's resolver
    "version": INPAINTING_VERSION,
    "input": inpainting_input(image="http://127.0.0.1:9/image.png", mask="http://127.0.0.1:9/mask.png"),
}
QUICK_SECONDS = 6.0  # the longest any answer may take while Redis is away (3 s upstream timeout + margin)


@dataclass
class Outcome:
    method: str
    status: int  # 0: transport error or client timeout
    content_type: str
    seconds: float
    prediction_id: str | None = None


def _upstream_creates(upstream: Upstream, prediction_id: str) -> int:
    """How many creates the upstream received for one gateway prediction (its webhook URL names it)."""
    return sum(1 for r in upstream.requests("POST", "/predictions") if prediction_id in json.dumps(r.json))


def _wait_terminal(client: httpx.Client, url: str, prediction_id: str, seconds: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(f"{url}/v1/predictions/{prediction_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] in ("succeeded", "failed", "canceled"):
            return response.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{prediction_id} still {response.json()['status']}"
        time.sleep(0.1)


def _ready_within(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway did not become ready again on its own"
        time.sleep(0.1)


def _assert_no_duplicates(upstream: Upstream, prediction_ids: list[str]) -> None:
    counts = {pid: _upstream_creates(upstream, pid) for pid in prediction_ids}
    assert all(count == 1 for count in counts.values()), counts


# --- 1. Redis paused (SIGSTOP) and restarted under load ---------------------------------------------------


def test_redis_paused_and_restarted_under_load_loses_nothing(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=0.3)
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    stop = threading.Event()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    try:
        settings = gateway_settings(server.url, catalog_path, free_port(), files_dir=tmp_path / "files", key_cache_seconds=0)
        with run_gateway(settings) as gateway:
            token, _ = gateway.new_key()

            def worker() -> None:
                mine: list[str] = []
                with httpx.Client(
                    base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=QUICK_SECONDS * 2
                ) as client:
                    while not stop.is_set():
                        for method in ("POST", "GET"):
                            if method == "GET" and not mine:
                                continue
                            start = time.monotonic()
                            try:
                                if method == "POST":
                                    response = client.post("/v1/predictions", json=CREATE)
                                else:
                                    response = client.get(f"/v1/predictions/{mine[-1]}")
                                status, kind = response.status_code, response.headers.get("content-type", "")
                            except httpx.HTTPError:
                                response, status, kind = None, 0, ""
                            pid = response.json()["id"] if response is not None and status == 201 else None
                            if pid:
                                mine.append(pid)
                            with lock:
                                outcomes.append(Outcome(method, status, kind, time.monotonic() - start, pid))
                        time.sleep(0.05)

            with ThreadPoolExecutor(max_workers=3) as pool:
                futures = [pool.submit(worker) for _ in range(3)]
                time.sleep(1.0)
                assert server.pid is not None
                os.kill(server.pid, signal.SIGSTOP)  # paused: connections stay open, nothing answers
                time.sleep(2.5)
                os.kill(server.pid, signal.SIGCONT)
                time.sleep(1.0)
                server.stop()  # down: connections refused
                time.sleep(2.0)
                server.start()  # same port, same data directory
                _ready_within(gateway.url, 10)
                with lock:
                    recovered_at = len(outcomes)
                time.sleep(1.5)
                stop.set()
                for future in futures:
                    future.result(timeout=30)

            assert all(o.status in (200, 201, 503) for o in outcomes), sorted({o.status for o in outcomes})
            assert all(o.content_type == PROBLEM for o in outcomes if o.status == 503)
            slowest = max(outcomes, key=lambda o: o.seconds)
            assert slowest.seconds < QUICK_SECONDS, slowest
            assert any(o.status == 503 for o in outcomes), "the outage was not noticed"
            created = [o.prediction_id for o in outcomes if o.prediction_id]
            late = outcomes[recovered_at:]
            assert any(o.status == 201 for o in late) and late[-3:] and all(o.status in (200, 201) for o in late[-3:]), late
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
                listed = _every_listed(client, f"{gateway.url}/v1/predictions")
                assert len(created) > 0 and set(created) <= set(listed)  # every 201 is still there
                # Everything the tenant can see finishes: no ghost left `starting`, no refresh held up for long by
                # a claim that leaked in the outage.
                assert _unfinished_after(client, gateway.url, listed, seconds=8) == {}
            _assert_no_duplicates(replicate_upstream, created)
    finally:
        stop.set()
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


def _every_listed(client: httpx.Client, url: str) -> list[str]:
    """The ids on every page of the tenant's list (a quick machine creates more than one page's worth here)."""
    listed: list[str] = []
    page_url: str | None = url
    while page_url:
        page = client.get(page_url).json()
        listed += [prediction["id"] for prediction in page["results"]]
        page_url = page.get("next")
    return listed


def _unfinished_after(client: httpx.Client, url: str, prediction_ids: list[str], seconds: float) -> dict[str, str]:
    """The predictions (id -> status) still unfinished after polling them all for `seconds`; each read is a 200."""
    deadline = time.monotonic() + seconds
    recovered_by = time.monotonic() + 3
    pending = {pid: "" for pid in prediction_ids}
    while True:
        for pid in list(pending):
            read = client.get(f"{url}/v1/predictions/{pid}")
            if read.status_code == 503 and time.monotonic() < recovered_by:  # pooled connections of the old server
                continue
            assert read.status_code == 200, read.text
            if read.json()["status"] in ("succeeded", "failed", "canceled"):
                del pending[pid]
            else:
                pending[pid] = read.json()["status"]
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.2)


def test_a_refresh_cut_short_by_an_outage_does_not_block_refreshes_after_it(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=0.2)
    replicate_upstream.controls.drop_webhooks(True)  # only a refresh can finish it
    with gateway_on_own_redis(tmp_path, catalog_path) as (server, gateway):
        token, _ = gateway.new_key()
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            pid = client.post(f"{gateway.url}/v1/predictions", json=CREATE).json()["id"]
            time.sleep(0.5)  # finished upstream, stale here
            replicate_upstream.controls.inject(Fault(route="get", delay=1.5))
            with ThreadPoolExecutor(max_workers=1) as pool:
                reading = pool.submit(client.get, f"{gateway.url}/v1/predictions/{pid}")  # claims, then waits
                time.sleep(0.5)
                server.stop()  # the refresh's write and its release both fail
                reading.result(timeout=10)
                time.sleep(1.5)
            server.start()
            _ready_within(gateway.url, 10)
            assert _unfinished_after(client, gateway.url, [pid], seconds=5) == {}


def test_a_create_cut_short_by_an_outage_leaves_no_prediction_that_never_finishes(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=0.2)
    with gateway_on_own_redis(tmp_path, catalog_path, key_cache_seconds=0) as (server, gateway):
        token, _ = gateway.new_key()
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            replicate_upstream.controls.inject(Fault(route="create", delay=1.0))  # record written, upstream slow
            with ThreadPoolExecutor(max_workers=1) as pool:
                creating = pool.submit(client.post, f"{gateway.url}/v1/predictions", json=CREATE)
                time.sleep(0.5)
                server.stop()  # the upstream takes it; the record's update and its clean-up both fail
                failed = creating.result(timeout=10)
            assert failed.status_code == 503 and failed.headers["content-type"] == PROBLEM
            assert len(replicate_upstream.controls.predictions()) == 1  # the upstream runs it regardless
            server.start()
            _ready_within(gateway.url, 10)
            listed = [p["id"] for p in client.get(f"{gateway.url}/v1/predictions").json()["results"]]
            assert _unfinished_after(client, gateway.url, listed, seconds=3) == {}


# --- 2. The upstream hangs, resets connections and answers garbage -----------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(route="create", delay=4.0, status=500), 504),  # beyond the catalog's 3 s provider timeout, never created
        (Fault(route="create", drop_connection=True), 502),
        (Fault(route="create", status=200, body={"unexpected": "shape"}), 502),
        (Fault(route="create", status=201, body={"id": 7, "status": "bogus"}), 502),
    ],
    ids=["hang", "reset", "wrong-shape", "bad-fields"],
)
def test_a_misbehaving_upstream_on_create_gives_a_gateway_problem_and_leaves_no_ghost(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream, fault: Fault, expected: int
) -> None:
    replicate_upstream.controls.inject(fault)
    start = time.monotonic()
    failed = api.post("/predictions", json=CREATE)
    assert time.monotonic() - start < QUICK_SECONDS
    assert failed.status_code == expected and failed.headers["content-type"] == PROBLEM, failed.text
    assert UPSTREAM_TOKEN not in failed.text
    assert api.get("/predictions").json()["results"] == []  # nothing visible that can never finish
    ok = api.post("/predictions", json=CREATE)  # the next create is not affected
    assert ok.status_code == 201
    with httpx.Client(headers=dict(api.headers), timeout=10) as client:
        _wait_terminal(client, gateway.url, ok.json()["id"])
    _assert_no_duplicates(replicate_upstream, [ok.json()["id"]])


def test_a_misbehaving_upstream_on_reads_never_hides_or_strands_a_prediction(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=0.3)
    replicate_upstream.controls.drop_webhooks(True)  # only reads (refreshes) can finish it
    created = api.post("/predictions", json=CREATE)
    assert created.status_code == 201
    pid = created.json()["id"]
    time.sleep(0.6)  # finished upstream, stale here
    for fault in (
        Fault(route="get", delay=4.0),
        Fault(route="get", drop_connection=True),
        Fault(route="get", status=200, body={"unexpected": "shape"}),
        Fault(route="get", status=200, body={"id": "other", "status": "bogus"}),
        Fault(route="get", status=500),
    ):
        replicate_upstream.controls.inject(fault)
        start = time.monotonic()
        read = api.get(f"/predictions/{pid}")
        assert time.monotonic() - start < QUICK_SECONDS
        assert read.status_code == 200 and read.json()["id"] == pid, (fault, read.text)
        time.sleep(0.15)  # let a slow refresh hand over before the next fault
    time.sleep(4.0)  # the hung refresh is released upstream-side within its timeout
    with httpx.Client(headers=dict(api.headers), timeout=10) as client:
        assert _wait_terminal(client, gateway.url, pid)["status"] == "succeeded"
    assert api.get("/predictions").json()["results"][0]["id"] == pid
    _assert_no_duplicates(replicate_upstream, [pid])


# --- 3. kill -9 of a gateway process mid-create and mid-wait ------------------------------------------------


@pytest.fixture
def doomed_gateway(redis_url: str, catalog_path: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    settings = {
        "public_base_url": "self",
        "refresh_after_seconds": "0.1",
        "allow_private_input_urls": "true",  # no DNS here: inputs name a loopback address instead
    }
    with gateway_process(redis_url, catalog_path, tmp_path / "doomed", **settings) as (url, _, process):
        yield url, process


def _upstream_ids(redis_url: str, prediction_ids: Iterable[str]) -> dict[str, str]:
    """The upstream id each gateway record holds ("" while the upstream has not taken it), read from Redis."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return {pid: client.hget(f"gw:pred:{{{pid}}}", "upstream_id") or "" for pid in prediction_ids}


def _kill_mid_create_and_mid_wait(
    doomed_url: str, doomed: subprocess.Popen[bytes], client: httpx.Client, upstream: Upstream
) -> tuple[int, int]:
    """SIGKILL the gateway while one create waits for a slow upstream and another is held by `Prefer: wait`."""

    def create(prefer: str | None) -> int:
        try:
            headers = {"Prefer": prefer} if prefer else {}
            return client.post(f"{doomed_url}/v1/predictions", json=LOOPBACK_CREATE, headers=headers).status_code
        except httpx.TransportError:
            return 0

    upstream.controls.inject(Fault(route="create", delay=1.0))
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(create, None)  # takes the delayed upstream create
        time.sleep(0.2)
        waiting = pool.submit(create, "wait=10")  # created upstream at once, then held
        time.sleep(0.5)
        doomed.send_signal(signal.SIGKILL)
        statuses = slow.result(timeout=10), waiting.result(timeout=10)
    doomed.wait(timeout=10)
    time.sleep(0.8)  # the delayed upstream create lands after the kill
    return statuses


def test_a_gateway_killed_mid_create_and_mid_wait_leaves_the_other_to_finish_its_predictions(
    gateway: Gateway, replicate_upstream: Upstream, doomed_gateway: tuple[str, subprocess.Popen[bytes]], redis_url: str
) -> None:
    doomed_url, doomed = doomed_gateway
    replicate_upstream.controls.configure(run_seconds=1.5)
    replicate_upstream.controls.drop_webhooks(True)  # only the survivor's refreshes can finish them
    token, _ = gateway.new_key()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
        before = [client.post(f"{doomed_url}/v1/predictions", json=LOOPBACK_CREATE) for _ in range(3)]
        assert [r.status_code for r in before] == [201] * 3
        created = [r.json()["id"] for r in before]
        assert _kill_mid_create_and_mid_wait(doomed_url, doomed, client, replicate_upstream) == (0, 0)

        listed = [p["id"] for p in client.get(f"{gateway.url}/v1/predictions").json()["results"]]
        # The create killed before its upstream id was recorded is not shown (its provisional record expires).
        assert set(created) <= set(listed) and len(listed) == 4
        assert _unfinished_after(client, gateway.url, listed, seconds=6) == {}  # every read a 200 from the survivor
        counts = {pid: _upstream_creates(replicate_upstream, pid) for pid in listed}
        assert all(count == 1 for count in counts.values()), counts  # none twice, and each one ran upstream
        assert all(_upstream_ids(redis_url, listed).values())


def test_a_create_cut_short_by_a_kill_leaves_no_prediction_that_never_finishes(
    gateway: Gateway, replicate_upstream: Upstream, doomed_gateway: tuple[str, subprocess.Popen[bytes]]
) -> None:
    doomed_url, doomed = doomed_gateway
    replicate_upstream.controls.configure(run_seconds=0.3)
    token, _ = gateway.new_key()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
        _kill_mid_create_and_mid_wait(doomed_url, doomed, client, replicate_upstream)
        listed = [p["id"] for p in client.get(f"{gateway.url}/v1/predictions").json()["results"]]
        assert _unfinished_after(client, gateway.url, listed, seconds=3) == {}
