"""Exact across processes: two gateway processes share one Redis. Usage equals the upstream's own record of
finished predictions, and the usage metrics equal the usage API; limits admit exactly their number, never
overspend a balance, never run one prediction too many; a process killed between a prediction's end and its
settlement loses nothing (another process settles it, once); a Redis server killed and restarted loses no
acknowledged usage record."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, TEST_CATALOG, Gateway, Upstream, gateway_on_own_redis, gateway_process
from tests.emulator.process import emulator_process
from tests.usage.conftest import cost_of, create_body, estimate, finished, settled, usage
from tests.usage.test_metering import usage_samples

KEYS = 5
CREATES = 1000
FAILURES = 20
CONNECTIONS = 200


@pytest.fixture(scope="module")
def processes(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two `gateway serve` processes on the suite's Redis, each told of its own address for upstream webhooks."""
    with (
        gateway_process(redis_url, catalog_path, tmp_path_factory.mktemp("first"), public_base_url="self") as first,
        gateway_process(redis_url, catalog_path, tmp_path_factory.mktemp("second"), public_base_url="self") as second,
    ):
        yield [first[0], second[0]]


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    body: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return self.body


async def _create_all(urls: list[str], tokens: list[str], bodies: list[dict[str, Any]]) -> list[Answer]:
    """Every create at once, alternating between the processes and the tokens (aiohttp: httpx's own pool is
    too slow to keep a thousand requests in flight)."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def create(number: int, body: dict[str, Any]) -> Answer:
            headers = {"Authorization": f"Bearer {tokens[number % len(tokens)]}"}
            async with session.post(f"{urls[number % len(urls)]}/v1/predictions", json=body, headers=headers) as response:
                return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, await response.json())

        return list(await asyncio.gather(*(create(n, body) for n, body in enumerate(bodies))))


def _burst(urls: list[str], tokens: list[str], count: int, tag: str) -> list[Answer]:
    return asyncio.run(_create_all(urls, tokens, [create_body(tag) for _ in range(count)]))


@dataclass(frozen=True)
class Pair:
    urls: list[str]  # the two gateway processes
    upstream: str  # the emulator
    admin: httpx.Client  # the admin API of the first


@pytest.fixture(scope="module")
def emulated_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two gateway processes on a Redis of their own, in front of the emulator in a process of its own (a
    thousand predictions' worth of upstream traffic would starve an emulator sharing the test's process)."""
    scratch = tmp_path_factory.mktemp("pair")
    with EmbeddedRedis(scratch / "redis") as server, emulator_process() as upstream:
        catalog = scratch / "catalog.toml"
        text = TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream)
        catalog.write_text(text.replace("timeout = 3\n", "timeout = 30\n"))  # a thousand creates queue up there
        with (
            gateway_process(server.url, catalog, scratch / "first", public_base_url="self") as first,
            gateway_process(server.url, catalog, scratch / "second", public_base_url="self") as second,
            httpx.Client(base_url=f"{first[0]}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin,
        ):
            yield Pair([first[0], second[0]], upstream, admin)


def _upstream_finished(upstream: str, tag: str, count: int, seconds: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        everything = httpx.get(f"{upstream}/v1/_emulator/predictions", timeout=30).json()
        mine = [p for p in everything if p["input"]["prompt"].startswith(tag)]
        done = [p for p in mine if p["status"] in ("succeeded", "failed", "canceled")]
        if len(done) == count:
            return done
        assert time.monotonic() < deadline, f"{len(done)} of {count} finished upstream"
        time.sleep(0.5)


def test_usage_of_a_thousand_creates_on_two_processes_is_exact(emulated_pair: Pair) -> None:
    processes, upstream, admin = emulated_pair.urls, emulated_pair.upstream, emulated_pair.admin
    tenant = f"exact-{time.time_ns()}"
    keys = [
        (created["token"], created["key"])
        for created in (admin.post("/keys", json={"tenant": tenant}).json() for _ in range(KEYS))
    ]
    for _ in range(FAILURES):
        httpx.post(f"{upstream}/v1/_emulator/fail_next", json={"error": "out of memory"}).raise_for_status()
    # The processes learn of ends by polling (their follow-ups race each other for every prediction): five upstream
    # webhooks per prediction would make this machine the test's bottleneck.
    httpx.post(f"{upstream}/v1/_emulator/drop_webhooks", json={"drop": True}).raise_for_status()
    bodies = [create_body(f"{tenant}/{n % KEYS}") for n in range(CREATES)]
    answers = asyncio.run(_create_all(processes, [token for token, _ in keys], bodies))
    assert Counter(a.status_code for a in answers) == {201: CREATES}

    finished_upstream = _upstream_finished(upstream, tenant, CREATES)
    settled(admin, tenant, CREATES, seconds=60, group_by="key")
    time.sleep(3)  # every prediction is settled again by the follow-ups: still counted once
    report = usage(admin, tenant=tenant, group_by="key")
    expected: dict[str, dict[str, Any]] = {}
    for prediction in finished_upstream:
        key_id = keys[int(prediction["input"]["prompt"].rsplit("/", 1)[1])][1]["key_id"]
        row = expected.setdefault(key_id, {"predictions": 0, "succeeded": 0, "failed": 0, "predict_us": 0, "cost": Decimal(0)})
        row["predictions"] += 1
        row[prediction["status"]] += 1
        row["predict_us"] += round(prediction["metrics"]["predict_time"] * 1e6)
        row["cost"] += cost_of(prediction)
    found = {
        row["key_id"]: {
            "predictions": row["predictions"],
            "succeeded": row["succeeded"],
            "failed": row["failed"],
            "predict_us": round(row["predict_time"] * 1e6),
            "cost": Decimal(row["cost"]),
        }
        for row in report["results"]
    }
    assert found == expected
    assert report["totals"]["failed"] == FAILURES

    for url in processes:  # any process answers with the shared totals
        text = httpx.get(f"{url}/metrics/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
        per_key = Counter[str]()
        for (name, labels), value in usage_samples(text).items():
            label = dict(labels)
            if name == "gateway_usage_predictions_total" and label["tenant"] == tenant:
                per_key[label["key_id"]] += int(value)
        assert dict(per_key) == {key_id: row["predictions"] for key_id, row in found.items()}


def test_a_rate_limit_admits_exactly_its_number_across_processes(gateway: Gateway, processes: list[str]) -> None:
    token, key = gateway.new_key()
    assert gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"creates_per_minute": 20}).status_code == 200
    answers = _burst(processes, [token], 60, "rate")
    assert Counter(a.status_code for a in answers) == {201: 20, 429: 40}
    assert all(a.headers["ratelimit-limit"] == "20" for a in answers if a.status_code == 429)


def test_a_balance_is_never_overspent_by_concurrent_creates(
    gateway: Gateway, processes: list[str], replicate_upstream: Upstream
) -> None:
    token, key = gateway.new_key()
    gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"prepaid": True})
    gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": str(estimate() * 25)})
    replicate_upstream.controls.configure(run_seconds=30)  # nothing settles during the burst
    try:
        answers = _burst(processes, [token], 200, "prepaid")
    finally:
        replicate_upstream.controls.configure()
    admitted = [a.json()["id"] for a in answers if a.status_code == 201]
    assert Counter(a.status_code for a in answers) == {201: 25, 402: 175}
    with gateway.client(token) as api:
        docs = []
        for prediction_id in admitted:
            api.post(f"/predictions/{prediction_id}/cancel")
            docs.append(finished(api, prediction_id))
    settled(gateway.admin, key["tenant"], 25)
    state = next(
        e for e in gateway.admin.get("/limits", params={"tenant": key["tenant"]}).json()["results"] if e["scope"] == "key"
    )
    assert Decimal(state["state"]["balance"]) == estimate() * 25 - sum((cost_of(d) for d in docs), Decimal(0))


def test_a_concurrency_limit_never_runs_one_more(gateway: Gateway, processes: list[str], replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"concurrent_predictions": 5})
    replicate_upstream.controls.configure(run_seconds=30)
    try:
        answers = _burst(processes, [token], 50, "concurrent")
    finally:
        replicate_upstream.controls.configure()
    assert Counter(a.status_code for a in answers) == {201: 5, 429: 45}
    with gateway.client(token) as api:
        for answer in answers:
            if answer.status_code == 201:
                api.post(f"/predictions/{answer.json()['id']}/cancel")


# Every key prefix the gateway writes but its usage records (`gw:usage:…`): a process whose Redis user has only
# these finishes predictions but cannot settle them, as if it died between the two.
_ALL_BUT_USAGE = [
    f"~gw:{prefix}*"
    for prefix in (
        "audit", "breaker", "creds", "events", "file", "key", "limits", "{deliveries}", "pred", "queue", "schedule",
        "schema", "secret", "tenant",
    )
]  # fmt: skip


def test_a_process_killed_before_settling_leaves_it_to_another_once(
    catalog_path: Path, tmp_path: Path, replicate_upstream: Upstream
) -> None:
    # A Redis of its own: no other gateway may settle what the doomed process leaves behind.
    with EmbeddedRedis(tmp_path / "redis") as server, redis.Redis.from_url(server.url, decode_responses=True) as client:
        client.acl_setuser(
            "no-usage", enabled=True, passwords=["+no-usage-password"], keys=_ALL_BUT_USAGE, channels=["*"], commands=["+@all"]
        )
        limited = f"redis://no-usage:no-usage-password@127.0.0.1:{server.port}"
        settings = {"public_base_url": "self", "follow_up_lease_seconds": "2"}
        with gateway_process(limited, catalog_path, tmp_path / "doomed", **settings) as (url, _, doomed):
            admin = httpx.Client(base_url=f"{url}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            created = admin.post("/keys", json={"tenant": "doomed"}).json()
            token, tenant = created["token"], created["key"]["tenant"]
            with httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {token}"}) as api:
                ids = [api.post("/predictions", json=create_body("killed")).json()["id"] for _ in range(3)]
                docs = [finished(api, prediction_id) for prediction_id in ids]  # this process applied their ends
            time.sleep(1)  # its settlements fail, and its follow-ups retry them in vain
            assert not client.exists(f"gw:usage:{{{tenant}}}:totals")
            os.kill(doomed.pid, signal.SIGKILL)
        with gateway_process(server.url, catalog_path, tmp_path / "heir", public_base_url="self") as (heir, _, _):
            heir_admin = httpx.Client(base_url=f"{heir}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            report = settled(heir_admin, tenant, 3, seconds=30)
            time.sleep(3)  # visited again by the follow-ups: still once
            assert usage(heir_admin, tenant=tenant)["totals"] == report["totals"]
    assert Decimal(report["totals"]["cost"]) == sum((cost_of(d) for d in docs), Decimal(0))


def test_a_redis_server_killed_and_restarted_keeps_every_acknowledged_record(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    with gateway_on_own_redis(tmp_path, catalog_path) as (server, gateway):
        token, key = gateway.new_key()
        with gateway.client(token) as api:
            for _ in range(10):
                finished(api, api.post("/predictions", json=create_body("durable")).json()["id"])
        report = settled(gateway.admin, key["tenant"], 10)  # acknowledged: readable through the API
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)  # no chance to write anything more to disk
        deadline = time.monotonic() + 20
        while True:
            try:
                after = usage(gateway.admin, tenant=key["tenant"])
                break
            except (AssertionError, httpx.TransportError):
                assert time.monotonic() < deadline, "the server did not come back"
                time.sleep(0.2)
        assert server.restarts >= 1
        assert after["totals"] == report["totals"]
