"""SIGTERM to a gateway process: readiness fails at once, a waiting create is answered with the prediction as it
stands, event streams end cleanly (for the client to resume elsewhere), a follow-up the process held is taken
by another process at once rather than a lease later, and the process exits within its bound."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store.embedded import EmbeddedRedis
from tests.api.test_streams import create_story
from tests.conftest import (
    ADMIN_TOKEN,
    STORY,
    STORY_VERSION,
    TEST_CATALOG,
    Gateway,
    Upstream,
    gateway_process,
)
from tests.emulator import Fault
from tests.sse import Event

SHUTDOWN_SECONDS = 8
ACCEPT_SECONDS = 2  # the process keeps accepting this long after SIGTERM, with readiness failing
PROMPTLY = 1.0  # a waiting request or a stream ends this soon after SIGTERM (long before ACCEPT_SECONDS end)
FOLLOW_UP_LEASE_SECONDS = 60
STORY_BODY = {"version": f"{STORY}:{STORY_VERSION}", "input": {"prompt": "a slow one"}}  # no input URL to resolve


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `work` in a thread; the dict gets its `result` (or `error`) and the time it `ended`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:  # the test asserts on it
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _stream_until_it_ends(url: str, opened: threading.Event) -> list[Event]:
    """Every event of a stream until the server ends it; a reset connection raises."""
    events: list[Event] = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=30) as response:
        assert response.status_code == 200
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.strip()
            elif not line and fields:
                events.append((fields["event"], fields["id"], fields.get("data", "")))
                fields = {}
                opened.set()
    return events


def test_sigterm_answers_waits_ends_streams_fails_readiness_and_exits_in_time(
    gateway: Gateway, replicate_upstream: Upstream, redis_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    replicate_upstream.controls.configure(run_seconds=40)  # nothing finishes while the test runs
    token, _ = gateway.new_key()
    headers = {"Authorization": f"Bearer {token}"}
    settings = {"shutdown_seconds": str(SHUTDOWN_SECONDS), "shutdown_accept_seconds": str(ACCEPT_SECONDS)}
    with gateway_process(redis_url, catalog_path, tmp_path / "gw", public_base_url="self", **settings) as (url, output, process):
        with httpx.Client(base_url=f"{url}/v1", headers=headers, timeout=30) as api:
            replicate_upstream.controls.inject(Fault(route="stream", status=503))  # this one is translated
            translated, relayed = create_story(api), create_story(api)
            opened = [threading.Event(), threading.Event()]
            readers = [
                _in_thread(lambda: _stream_until_it_ends(translated["urls"]["stream"], opened[0])),
                _in_thread(lambda: _stream_until_it_ends(relayed["urls"]["stream"], opened[1])),
            ]
            waiter = _in_thread(lambda: api.post("/predictions", json=STORY_BODY, headers={"Prefer": "wait=50"}))
            assert all(event.wait(10) for event in opened)
            time.sleep(1)  # the create has reached its wait
            before = httpx.get(f"{url}/health/ready")
            assert before.status_code == 200 and "connection" not in before.headers
            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            # The signal is handled asynchronously: readiness fails as soon as it is (well before ACCEPT_SECONDS).
            _until(lambda: httpx.get(f"{url}/health/ready").status_code == 503, PROMPTLY)
            ready = httpx.get(f"{url}/health/ready")
            assert (ready.status_code, ready.headers["content-type"]) == (503, "application/problem+json")
            assert ready.json() == {"title": "Service unavailable", "detail": "The gateway is shutting down", "status": 503}
            alive = httpx.get(f"{url}/health")  # and still accepting meanwhile
            assert alive.status_code == 200 and alive.headers["connection"] == "close"  # the next request goes elsewhere
            opening = time.monotonic()
            late = _stream_until_it_ends(relayed["urls"]["stream"], threading.Event())  # opened while draining
            assert late and time.monotonic() - opening < PROMPTLY  # what there is so far, then a clean end
            for thread, _ in [waiter, *readers]:
                thread.join(10)
        waited = waiter[1]
        assert "error" not in waited, waited
        assert waited["ended"] - stopping < PROMPTLY
        answer = waited["result"]
        assert answer.status_code == 201 and answer.json()["status"] == "starting"  # as it stands, for the client to poll
        assert answer.headers["preference-applied"] == "wait=50"
        for _, outcome in readers:
            assert "error" not in outcome, outcome  # the stream ended, it was not reset
            assert outcome["ended"] - stopping < PROMPTLY
            assert outcome["result"] and not [event for event in outcome["result"] if event[0] == "done"]
        process.wait(SHUTDOWN_SECONDS + 5)
        took = time.monotonic() - stopping
        assert process.returncode == 0
        assert ACCEPT_SECONDS <= took < SHUTDOWN_SECONDS
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    assert any("shutting down" in line for line in output)


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A Redis of the test's own: the suite's in-process gateway would take the follow-up otherwise."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def test_a_follow_up_held_by_a_stopping_process_is_taken_by_another_at_once(
    replicate_upstream: Upstream, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"  # upstream calls may take long: the follow-up stays in flight
    text = TEST_CATALOG.replace("{replicate}", replicate_upstream.url).replace("{aggregator}", replicate_upstream.url)
    catalog.write_text(text.replace("timeout = 3", "timeout = 30"))
    replicate_upstream.controls.configure(run_seconds=0.5)
    replicate_upstream.controls.drop_webhooks(True)  # only a follow-up can learn that it finished
    settings = {"follow_up_lease_seconds": str(FOLLOW_UP_LEASE_SECONDS), "refresh_after_seconds": "3600"}
    with gateway_process(own_redis.url, catalog, tmp_path / "a", **settings) as (first, _, first_process):
        admin = httpx.Client(base_url=f"{first}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        token = admin.post("/keys", json={"tenant": "follow-ups"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{first}/v1/predictions", json=STORY_BODY, headers=headers).json()
        [upstream] = replicate_upstream.controls.predictions()
        # The first follow-up (a second after the create) hangs upstream. Only this prediction's reads: other
        # gateways of the suite still poll the emulator for predictions of earlier tests.
        replicate_upstream.controls.inject(Fault(route="get", delay=12, path=f"/predictions/{upstream['id']}"))
        _until(lambda: replicate_upstream.requests("GET", f"/predictions/{upstream['id']}"), 10)  # the follow-up is out
        with gateway_process(own_redis.url, catalog, tmp_path / "b", **settings) as (second, _, _):
            first_process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()

            def finished() -> bool:
                read = httpx.get(f"{second}/v1/predictions/{created['id']}", headers=headers).json()
                return bool(read["status"] == "succeeded")  # the record as stored: this process never refreshes

            _until(finished, 20)
            taken_over = time.monotonic() - stopping
            first_process.wait(10)
    assert taken_over < 15  # not FOLLOW_UP_LEASE_SECONDS later (a busy machine takes a few seconds to get there)
    polls = replicate_upstream.requests("GET", f"/predictions/{upstream['id']}")
    assert len(polls) == 2  # the hung one, then the other process's


def _until(check: Callable[[], Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_a_request_that_outlasts_the_bound_does_not_hold_the_process_up(
    replicate_upstream: Upstream, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"  # the upstream may take 30 s to answer a create
    text = TEST_CATALOG.replace("{replicate}", replicate_upstream.url).replace("{aggregator}", replicate_upstream.url)
    catalog.write_text(text.replace("timeout = 3", "timeout = 30"))
    bound = 4
    with gateway_process(own_redis.url, catalog, tmp_path / "gw", shutdown_seconds=str(bound)) as (url, _, process):
        admin = httpx.Client(base_url=f"{url}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        token = admin.post("/keys", json={"tenant": "stuck"}).json()["token"]
        replicate_upstream.controls.inject(Fault(route="create", delay=12))
        headers = {"Authorization": f"Bearer {token}"}
        creating, _ = _in_thread(lambda: httpx.post(f"{url}/v1/predictions", json=STORY_BODY, headers=headers, timeout=30))
        _until(lambda: replicate_upstream.requests("POST", "/predictions"), 10)  # the create hangs upstream
        process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        process.wait(bound + 10)
        took = time.monotonic() - stopping
        creating.join(15)
    assert took < bound + 1  # not when the upstream answers, 12 s on
