"""Credential pools of a Replicate provider with two tokens, against the emulator and real gateways on Redis:
a 429 sets the token aside for its Retry-After in every process, reads find the account that created a
prediction, and nothing visible shows a token."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr
from starlette import routing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from gateway.catalog import Route, TargetKind
from gateway.config import ProviderConfig
from gateway.errors import UpstreamError
from gateway.providers import CreateRequest, CredentialPools, UpstreamClient
from gateway.providers.credentials import fingerprint
from gateway.providers.replicate import ReplicateProvider
from gateway.store import Store
from gateway.store.embedded import EmbeddedRedis
from tests.conftest import (
    ADMIN_TOKEN,
    INPAINTING,
    INPAINTING_SCHEMA,
    INPAINTING_VERSION,
    TEST_CATALOG,
    Gateway,
    gateway_process,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator import EmulatedModel, EmulatorControls, Fault, create_replicate_emulator
from tests.servers import free_port, serve_in_thread
from tests.usage.conftest import create_body

CREATE = {"version": INPAINTING_VERSION, "input": inpainting_input()}


@dataclass
class Accounts:
    """An emulator where each of two fresh tokens is an account of its own."""

    url: str
    controls: EmulatorControls
    a: str
    b: str

    @property
    def environ(self) -> dict[str, str]:
        return {"CREDS_A": self.a, "CREDS_B": self.b}

    def tokens_of(self, method: str, path: str) -> list[str]:
        """Which token each matching request carried ("A" or "B"), oldest first."""
        names = {f"Bearer {self.a}": "A", f"Bearer {self.b}": "B"}
        return [
            names.get(r.headers.get("authorization", ""), "?")
            for r in self.controls.requests()
            if r.method == method and r.path.endswith(path)
        ]

    def config(self, *tokens: str) -> ProviderConfig:
        return ProviderConfig(kind="replicate", base_url=f"{self.url}/v1", timeout=3).model_copy(
            update={"tokens": tuple(SecretStr(t) for t in tokens or (self.a, self.b))}
        )


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    a, b = f"r8_alpha_{uuid.uuid4().hex}", f"r8_beta_{uuid.uuid4().hex}"  # fresh: their cooling is this test's
    model = EmulatedModel("stability-ai", "stable-diffusion-inpainting", {INPAINTING_VERSION: INPAINTING_SCHEMA})
    app = create_replicate_emulator(tokens=[a, b], models=[model], accounts={a: "alpha", b: "beta"})
    with serve_in_thread(app) as url:
        yield Accounts(url, app.state.emulator, a, b)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("credentials-redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(module_redis: str) -> str:
    """An empty Redis: no earlier test's predictions, whose follow-ups would take turns of the pool."""
    with redis.Redis.from_url(module_redis) as client:
        client.flushall()
    return module_redis


@pytest.fixture
def two_token_catalog(accounts: Accounts, tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    text = TEST_CATALOG.replace("{replicate}", accounts.url).replace("{aggregator}", accounts.url)
    path.write_text(text.replace('token_env = ["UPSTREAM_TOKEN"]', 'token_env = ["CREDS_A", "CREDS_B"]'))
    return path


@pytest.fixture
def two_token_gateway(redis_url: str, two_token_catalog: Path, accounts: Accounts, tmp_path: Path) -> Iterator[Gateway]:
    settings = gateway_settings(redis_url, two_token_catalog, free_port(), files_dir=tmp_path / "files")
    with run_gateway(settings, accounts.environ) as gateway:
        yield gateway


def _series(url: str, name: str, credential: str) -> float | None:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf'^{name}\{{credential="{credential}",provider="replicate"\}} (\S+)$', text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def _states(redis_url: str, accounts: Accounts) -> list[dict[str, object]]:
    """The admin snapshot as a process that never met a 429 reads it from the shared store."""

    async def read() -> list[dict[str, object]]:
        store = Store.connect(redis_url, prediction_retention_seconds=60, audit_retention_seconds=60)
        try:
            config = accounts.config().model_copy(update={"token_names": ("CREDS_A", "CREDS_B")})
            return [state.public() for state in await CredentialPools(store.credentials).pool("replicate", config).states()]
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_a_429_moves_the_request_to_the_next_token_and_sets_the_first_aside(
    two_token_gateway: Gateway, accounts: Accounts, redis_url: str
) -> None:
    accounts.controls.inject(Fault(route="create", status=429, retry_after=30, token=accounts.a))
    with two_token_gateway.client(two_token_gateway.new_key()[0]) as api:
        assert api.post("/predictions", json=CREATE).status_code == 201
        assert accounts.tokens_of("POST", "/predictions") == ["A", "B"]
        assert [api.post("/predictions", json=CREATE).status_code for _ in range(4)] == [201] * 4
    assert accounts.tokens_of("POST", "/predictions") == ["A", "B", "B", "B", "B", "B"]
    a, b = fingerprint(accounts.a), fingerprint(accounts.b)
    assert _series(two_token_gateway.url, "gateway_upstream_credential_cooling", a) == 1
    assert _series(two_token_gateway.url, "gateway_upstream_credential_cooling", b) == 0
    assert _series(two_token_gateway.url, "gateway_upstream_rate_limited_total", a) == 1
    first, second = _states(redis_url, accounts)
    assert (first["fingerprint"], first["env"], first["state"], first["rate_limited_total"]) == (a, "CREDS_A", "cooling", 1)
    assert second == {"fingerprint": b, "env": "CREDS_B", "state": "available", "cooling_until": None, "rate_limited_total": 0}


def test_a_token_is_used_again_once_its_retry_after_has_passed(two_token_gateway: Gateway, accounts: Accounts) -> None:
    accounts.controls.inject(Fault(route="create", status=429, retry_after=1, token=accounts.a))
    with two_token_gateway.client(two_token_gateway.new_key()[0]) as api:
        assert api.post("/predictions", json=CREATE).status_code == 201
        assert api.post("/predictions", json=CREATE).status_code == 201
        time.sleep(1.2)
        assert [api.post("/predictions", json=CREATE).status_code for _ in range(3)] == [201] * 3
    assert accounts.tokens_of("POST", "/predictions")[:3] == ["A", "B", "B"]
    assert "A" in accounts.tokens_of("POST", "/predictions")[3:]


def test_every_token_cooling_is_a_503_with_the_shortest_retry_after_and_no_upstream_call(
    two_token_gateway: Gateway, accounts: Accounts
) -> None:
    accounts.controls.inject(Fault(route="create", status=429, retry_after=20, token=accounts.a))
    accounts.controls.inject(Fault(route="create", status=429, retry_after=5, token=accounts.b))
    with two_token_gateway.client(two_token_gateway.new_key()[0]) as api:
        refused = api.post("/predictions", json=CREATE)
        assert (refused.status_code, refused.headers["content-type"]) == (503, "application/problem+json")
        assert refused.json()["detail"] == "The upstream provider is rate limiting the gateway; retry shortly"
        assert refused.headers["retry-after"] == "5"
        again = api.post("/predictions", json=CREATE)
        assert again.status_code == 503 and again.headers["retry-after"] in ("4", "5")
    assert sorted(accounts.tokens_of("POST", "/predictions")) == ["A", "B"]


def test_a_gateway_started_during_a_cooling_reads_it_from_redis(
    two_token_gateway: Gateway, two_token_catalog: Path, accounts: Accounts, redis_url: str, tmp_path: Path
) -> None:
    accounts.controls.inject(Fault(route="create", status=429, retry_after=30, token=accounts.a))
    with two_token_gateway.client(two_token_gateway.new_key()[0]) as api:
        assert api.post("/predictions", json=CREATE).status_code == 201
    settings = gateway_settings(redis_url, two_token_catalog, free_port(), files_dir=tmp_path / "late")
    with run_gateway(settings, accounts.environ) as late, late.client(late.new_key()[0]) as api:
        _eventually(lambda: _series(late.url, "gateway_upstream_credential_cooling", fingerprint(accounts.a)) == 1)
        assert [api.post("/predictions", json=CREATE).status_code for _ in range(3)] == [201] * 3
    assert accounts.tokens_of("POST", "/predictions") == ["A", "B", "B", "B", "B"]


def test_gateway_processes_share_the_cooling(
    redis_url: str, two_token_catalog: Path, accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, token in accounts.environ.items():
        monkeypatch.setenv(name, token)
    with (
        gateway_process(redis_url, two_token_catalog, tmp_path / "one", public_base_url="self") as (one, _, _),
        gateway_process(redis_url, two_token_catalog, tmp_path / "two", public_base_url="self") as (two, _, _),
    ):
        token = _process_key(one)
        accounts.controls.inject(Fault(route="create", status=429, retry_after=30, token=accounts.a))
        assert _create(one, token).status_code == 201
        assert accounts.tokens_of("POST", "/predictions") == ["A", "B"]
        _eventually(lambda: _series(two, "gateway_upstream_credential_cooling", fingerprint(accounts.a)) == 1)
        assert [_create(two, token).status_code for _ in range(4)] == [201] * 4
        assert accounts.tokens_of("POST", "/predictions") == ["A", "B", "B", "B", "B", "B"]
        assert _series(two, "gateway_upstream_rate_limited_total", fingerprint(accounts.a)) is None  # counted by one


def _process_key(url: str) -> str:
    created = httpx.post(
        f"{url}/admin/v1/keys", json={"tenant": f"t-{uuid.uuid4().hex[:8]}"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def _create(url: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/predictions", json=create_body("shared cooling"), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _eventually(check: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within time"
        time.sleep(0.05)


async def _created(provider: ReplicateProvider) -> str:
    route = Route("replicate", TargetKind.VERSION, INPAINTING_VERSION)
    created = await provider.create(CreateRequest(uuid.uuid4().hex, INPAINTING, route, inpainting_input()))
    return created.id


async def test_another_tokens_prediction_is_read_and_cancelled_with_the_token_that_created_it(accounts: Accounts) -> None:
    """A process that does not remember the creator (one restarted, another replica) finds it after a 404."""
    client = UpstreamClient(timeout=5, max_connections=4)
    creator, reader, canceller = (ReplicateProvider("replicate", accounts.config(), client) for _ in range(3))
    try:
        made_with_a = await _created(creator)
        assert (await creator.get(made_with_a)).id == made_with_a  # remembered: A at once
        assert accounts.tokens_of("GET", made_with_a) == ["A"]
        await _created(reader)  # its next pick is B
        assert (await reader.get(made_with_a)).id == made_with_a
        assert accounts.tokens_of("GET", made_with_a) == ["A", "B", "A"]
        assert (await reader.get(made_with_a)).id == made_with_a  # now remembered
        assert accounts.tokens_of("GET", made_with_a) == ["A", "B", "A", "A"]
        await _created(canceller)
        assert (canceled := await canceller.cancel(made_with_a)) is not None and canceled.status.value == "canceled"
        assert accounts.tokens_of("POST", f"{made_with_a}/cancel") == ["B", "A"]
    finally:
        await client.aclose()


async def test_an_output_file_another_token_cannot_see_is_fetched_with_the_one_that_can(accounts: Accounts) -> None:
    seen: list[str] = []

    async def delivery(request: Request) -> Response:  # the file is the first account's only
        seen.append("A" if request.headers.get("authorization") == f"Bearer {accounts.a}" else "B")
        return Response(b"file") if seen[-1] == "A" else Response(status_code=404)

    client = UpstreamClient(timeout=5, max_connections=4)
    with serve_in_thread(Starlette(routes=[routing.Route("/v1/files/out.png", delivery)])) as host:
        config = accounts.config().model_copy(update={"base_url": f"{host}/v1"})
        provider = ReplicateProvider("replicate", config, client)
        try:
            for _ in range(2):  # the first with A, the second with B, then A
                stream = await provider.open_output(f"{host}/v1/files/out.png")
                assert (stream.status, b"".join([chunk async for chunk in stream.chunks()])) == (200, b"file")
        finally:
            await client.aclose()
    assert seen == ["A", "B", "A"]


async def test_with_one_token_a_404_is_not_retried(accounts: Accounts) -> None:
    client = UpstreamClient(timeout=5, max_connections=4)
    only_b = ReplicateProvider("replicate", accounts.config(accounts.b), client)
    try:
        made_with_a = await _created(ReplicateProvider("replicate", accounts.config(accounts.a), client))
        with pytest.raises(UpstreamError) as missing:
            await only_b.get(made_with_a)
        assert missing.value.status == 502
        assert accounts.tokens_of("GET", made_with_a) == ["B"]
    finally:
        await client.aclose()


def test_no_token_or_part_of_one_shows_in_the_snapshot_metrics_or_logs(
    two_token_gateway: Gateway, accounts: Accounts, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        accounts.controls.inject(Fault(route="create", status=429, retry_after=30, token=accounts.a))
        with two_token_gateway.client(two_token_gateway.new_key()[0]) as api:
            assert api.post("/predictions", json=CREATE).status_code == 201
        shown = [repr(_states(redis_url, accounts)), httpx.get(f"{two_token_gateway.url}/metrics").text, caplog.text]
    assert f"credential {fingerprint(accounts.a)} (CREDS_A) is rate limited" in caplog.text
    for token in (accounts.a, accounts.b):
        secret = token.rsplit("_", 1)[1]
        parts = {secret[i : i + 8] for i in range(len(secret) - 7)}
        for text in shown:
            assert not [part for part in parts if part in text]
