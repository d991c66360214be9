"""Webhooks survive their senders: a process killed mid-retry leaves its delivery to another, a live sender
keeps its claim however slow the receiver, a terminal webhook missed by a crash is settled exactly once, and
the address is checked again on the connection itself."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from replicate.webhook import Webhooks, WebhookSigningSecret

from gateway.deliveries import Outbox
from gateway.status import Status
from gateway.store import Delivery, Store
from gateway.store.deliveries import STREAM
from tests.conftest import (
    ADMIN_TOKEN,
    INPAINTING_VERSION,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    gateway_process,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.deliveries.conftest import LEASE_SECONDS, Receiver, webhook_settings
from tests.servers import free_port

LOOPBACK_INPUT = inpainting_input(image="http://127.0.0.1:9/image.png", mask="http://127.0.0.1:9/mask.png")


def _store(url: str) -> Store:
    return Store.connect(url, prediction_retention_seconds=3600, audit_retention_seconds=3600)


def _process_settings(**overrides: Any) -> dict[str, str]:
    settings = {**webhook_settings(**overrides), "public_base_url": "self", "allowed_private_cidrs": "127.0.0.0/8"}
    return {name: str(value) for name, value in settings.items()}


def test_a_delivery_whose_process_is_killed_mid_retry_is_finished_by_another_process(
    webhook_redis: str, catalog_path: Path, tmp_path: Path, receiver: Receiver, replicate_upstream: Upstream
) -> None:
    hook = receiver.hook(failing=True)
    settings = _process_settings(webhook_retry_seconds=60)
    with gateway_process(webhook_redis, catalog_path, tmp_path / "doomed", **settings) as (url, _, doomed):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "killed"}, headers=admin).json()["token"]
        body = {"version": INPAINTING_VERSION, "input": LOOPBACK_INPUT, "webhook": hook.url, "webhook_events_filter": ["completed"]}
        assert httpx.post(f"{url}/v1/predictions", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 201
        hook.until(lambda got: len(got) >= 2)  # failed twice, with retries to come
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.time()
    hook.failing = False
    with gateway_process(webhook_redis, catalog_path, tmp_path / "heir", **settings) as (heir, output, _):
        received = hook.terminal(seconds=LEASE_SECONDS + 10)
        secret = httpx.get(f"{heir}/v1/webhooks/default/secret", headers={"Authorization": f"Bearer {token}"}).json()["key"]
    after_kill = [r for r in received if r.at > killed_at]
    assert [r.answered for r in after_kill] == [204] and received[-1] is after_kill[0]
    assert len({r.headers["webhook-id"] for r in received}) == 1
    Webhooks.validate(headers=after_kill[0].headers, body=after_kill[0].body.decode(), secret=WebhookSigningSecret(key=secret))
    assert output and not any(secret in line for line in output)
    assert redis.Redis.from_url(webhook_redis).xlen(STREAM) == 0


def test_a_delivery_held_by_a_process_stopped_with_sigterm_is_taken_over_at_once_not_a_lease_later(
    webhook_redis: str, catalog_path: Path, tmp_path: Path, receiver: Receiver, replicate_upstream: Upstream
) -> None:
    hook = receiver.hook(failing=True)
    lease = 30  # far longer than the takeover may take
    settings = _process_settings(webhook_retry_seconds=60, webhook_lease_seconds=lease)
    with gateway_process(webhook_redis, catalog_path, tmp_path / "stopping", **settings) as (url, _, stopping):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "stopped"}, headers=admin).json()["token"]
        body = {"version": INPAINTING_VERSION, "input": LOOPBACK_INPUT, "webhook": hook.url, "webhook_events_filter": ["completed"]}
        assert httpx.post(f"{url}/v1/predictions", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 201
        hook.until(lambda got: len(got) >= 2)  # failed twice, with retries to come
        stopping.send_signal(signal.SIGTERM)
        assert stopping.wait(10) == 0
        stopped_at = time.time()
    hook.failing = False
    with gateway_process(webhook_redis, catalog_path, tmp_path / "heir", **settings):
        received = hook.terminal(seconds=lease)
    assert received[-1].answered == 204 and received[-1].at - stopped_at < lease / 3  # given back, taken at the first look
    assert len({r.headers["webhook-id"] for r in received}) == 1


@pytest.fixture
def second(webhook_redis: str, catalog_path: Path, hooked: Gateway) -> Iterator[Gateway]:
    """Another gateway on the same Redis, ready to take over any delivery `hooked` stops renewing: sooner than
    `hooked` would reclaim its own, and later than the renewals `hooked` sends every third of its lease."""
    settings = webhook_settings(webhook_lease_seconds=LEASE_SECONDS * 2 / 3)
    with run_gateway(gateway_settings(webhook_redis, catalog_path, free_port(), **settings)) as gateway:
        yield gateway


def test_a_live_sender_keeps_its_delivery_however_slow_the_receiver(hooked: Gateway, second: Gateway, receiver: Receiver) -> None:
    hook = receiver.hook(delay=LEASE_SECONDS * 2.5)
    with hooked.client(hooked.new_key()[0]) as api:
        body = {"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook": hook.url, "webhook_events_filter": ["completed"]}
        assert api.post("/predictions", json=body).status_code == 201
    hook.terminal(seconds=LEASE_SECONDS * 4)
    time.sleep(LEASE_SECONDS * 2)
    assert len(hook.received) == 1


def test_a_terminal_webhook_missed_between_compare_and_set_and_enqueue_is_sent_once_by_the_follow_ups(
    hooked: Gateway, webhook_redis: str, receiver: Receiver, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    hook = receiver.hook()
    with hooked.client(hooked.new_key()[0]) as api:
        body = {"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook": hook.url, "webhook_events_filter": ["completed"]}
        prediction_id = api.post("/predictions", json=body).json()["id"]
    links = hooked.services.links
    render = lambda record: orjson.dumps(links.prediction(record, links.api_root())).decode()  # noqa: E731

    async def finish_without_telling_observers() -> None:
        store = _store(webhook_redis)
        try:
            record = await store.predictions.get(prediction_id)
            assert record is not None
            doc = {**record.doc, "status": "succeeded", "output": ["https://example.com/out.png"]}
            # The compare-and-set of a process that died before telling its observers.
            assert await store.predictions.apply(prediction_id, Status.SUCCEEDED, doc, time.time())
        finally:
            await store.aclose()

    async def settle_again() -> None:
        store = _store(webhook_redis)
        try:
            finished = await store.predictions.get(prediction_id)
            assert finished is not None
            outbox = Outbox(store.deliveries, render)
            await asyncio.gather(*(outbox.settle(finished) for _ in range(5)))  # sweeps of several processes
        finally:
            await store.aclose()

    asyncio.run(finish_without_telling_observers())
    [delivered] = hook.terminal()  # the follow-up that visits every prediction until it has ended sent it
    assert delivered.json["status"] == "succeeded" and delivered.json["id"] == prediction_id
    asyncio.run(settle_again())
    time.sleep(1)
    assert len(hook.received) == 1


def test_the_address_is_checked_on_the_connection_the_sender_makes(tmp_path: Path, catalog_path: Path, receiver: Receiver) -> None:
    hook = receiver.hook()
    with gateway_on_own_redis(tmp_path, catalog_path) as (server, _):  # 127.0.0.0/8 is not allowed here
        delivery = Delivery("msg_direct", hook.url, "acme", "direct", '{"status":"succeeded"}', True, time.time())

        async def enqueue() -> None:
            store = _store(server.url)
            try:
                await store.deliveries.enqueue(delivery)
            finally:
                await store.aclose()

        asyncio.run(enqueue())
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 10
        while client.xlen(STREAM):  # finished (given up) without a retry: the address is never allowed
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.close()
    assert hook.received == []
