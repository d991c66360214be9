"""One suite over every upstream adapter, each against a real upstream: the Replicate emulator over HTTP and a
real Cog server of the demo model. What a kind cannot do is in `EXPECTED_CAPABILITIES`, and the suite checks
both sides of it: the kind says so, and the call is not implemented."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from gateway.catalog import Route, TargetKind
from gateway.config import ProviderConfig
from gateway.errors import InvalidInput, Unauthenticated, UpstreamError, UpstreamUnavailable
from gateway.predictions import new_prediction_id
from gateway.providers import (
    REGISTRY,
    Callback,
    Capabilities,
    CreateRequest,
    Provider,
    ReplicateProvider,
    UpstreamClient,
    UpstreamPrediction,
)
from gateway.providers.cog import CogAdapter, CogServerPool
from gateway.status import Status
from tests.conftest import INPAINTING_VERSION, UPSTREAM_TOKEN, Upstream, inpainting_input
from tests.emulator import Fault
from tests.emulator.predictions import signed_headers
from tests.images import data_uri, mask_png, png_with_square
from tests.servers import free_port, serve_in_thread

in_module_loop = pytest.mark.asyncio(loop_scope="module")  # the Cog server's health client lives in this loop

MODEL_DIR = Path(__file__).parents[2] / "models" / "inpaint"
RUN_SECONDS = 1.5  # the demo model's delay, long enough to cancel a run
SERVER_TOKEN = "conformance-server-token"
KINDS = ["replicate", "cog"]

EXPECTED_CAPABILITIES = {
    "replicate": Capabilities(get_by_id=True, cancel=True, slots=False, remote_outputs=True),
    "cog": Capabilities(get_by_id=False, cancel=True, slots=True, remote_outputs=False),
}
# The Provider method each capability needs; a kind without the capability leaves the base's stub in place.
CAPABILITY_METHODS = {"get_by_id": "get", "cancel": "cancel", "remote_outputs": "open_output"}


@dataclass
class Receiver:
    """Webhooks an upstream sent: (payload, Authorization header)."""

    url: str = ""
    received: list[tuple[Any, str | None]] = field(default_factory=list)


class Harness:
    """Drives one kind of upstream through the same steps; subclasses hold the kind's own way of doing each."""

    kind: str
    provider: Provider

    async def create(self, prediction_id: str, given: dict[str, Any]) -> UpstreamPrediction:
        raise NotImplementedError

    async def final(self, created: UpstreamPrediction) -> UpstreamPrediction:
        """The prediction once terminal, learnt the way the gateway learns it for this kind."""
        raise NotImplementedError

    async def cancel(self, created: UpstreamPrediction) -> UpstreamPrediction | None:
        return await self.provider.cancel(created.id)


class ReplicateHarness(Harness):
    kind = "replicate"

    def __init__(self, upstream: Upstream, client: UpstreamClient) -> None:
        config = ProviderConfig(kind="replicate", base_url=f"{upstream.url}/v1", tokens=(SecretStr(UPSTREAM_TOKEN),), timeout=3)
        self.provider = ReplicateProvider("replicate", config, client)
        self.upstream = upstream

    async def create(self, prediction_id: str, given: dict[str, Any]) -> UpstreamPrediction:
        route = Route("replicate", TargetKind.VERSION, INPAINTING_VERSION)
        created = await self.provider.create(
            CreateRequest(prediction_id, "stability-ai/stable-diffusion-inpainting", route, given)
        )
        assert created is not None
        return created

    async def final(self, created: UpstreamPrediction) -> UpstreamPrediction:
        return await _eventually(lambda: self.provider.get(created.id))


class CogHarness(Harness):
    kind = "cog"

    def __init__(self, server: str, adapter: CogAdapter, receiver: Receiver) -> None:
        self.provider = _cog_provider_stub(adapter)
        self.adapter = adapter
        self.server = server
        self.receiver = receiver

    async def create(self, prediction_id: str, given: dict[str, Any]) -> UpstreamPrediction:
        route = Route("cog", TargetKind.SERVER, "")
        request = CreateRequest(prediction_id, "gateway-demo/inpaint", route, given, f"{self.receiver.url}/hook")
        return await self.adapter.start(request, self.server)

    async def final(self, created: UpstreamPrediction) -> UpstreamPrediction:
        async def from_webhooks() -> UpstreamPrediction:
            states = [self.adapter.parse_webhook(payload, created.id, auth) for payload, auth in self.receiver.received]
            mine = [state for state in states if state.id == created.id]
            # Webhooks may arrive out of order (as the gateway's compare-and-set knows): a terminal one is final.
            return next((state for state in mine if state.status.terminal), mine[-1] if mine else created)

        return await _eventually(from_webhooks)


def _cog_provider_stub(adapter: CogAdapter) -> Provider:
    """The cog kind's Provider calls as they delegate to the adapter (the queue is tested in tests/cog)."""
    kind = REGISTRY["cog"][0]
    provider = kind.__new__(kind)
    provider.adapter = adapter  # type: ignore[attr-defined]
    return provider


async def _eventually(read: Any, timeout: float = 15) -> UpstreamPrediction:
    deadline = time.monotonic() + timeout
    while True:
        state: UpstreamPrediction = await read()
        if state.status.terminal:
            return state
        assert time.monotonic() < deadline, f"still {state.status} after {timeout}s: {state}"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    async def hook(request: Request) -> Response:
        received.received.append((await request.json(), request.headers.get("authorization")))
        return Response(status_code=200)

    with serve_in_thread(Starlette(routes=[HttpRoute("/hook", hook, methods=["POST"])])) as url:
        received.url = url
        yield received


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cog_server(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, CogAdapter]]:
    url = f"http://127.0.0.1:{free_port()}"
    adapter = CogAdapter(UpstreamClient(5.0, 10), {url: SERVER_TOKEN})
    pool = CogServerPool(
        MODEL_DIR,
        [url],
        adapter.health,
        webhook_token=lambda _: SERVER_TOKEN,
        log_dir=tmp_path_factory.mktemp("cog-logs"),
        env={"INPAINT_DELAY_SECONDS": str(RUN_SECONDS)},
    )
    await pool.start(ready_timeout=60)
    yield url, adapter
    await pool.stop()
    await adapter.aclose()


@pytest_asyncio.fixture(loop_scope="module", params=KINDS)
async def harness(
    request: pytest.FixtureRequest, replicate_upstream: Upstream, receiver: Receiver, cog_server: tuple[str, CogAdapter]
) -> AsyncIterator[Harness]:
    if request.param == "replicate":
        replicate_upstream.controls.configure(run_seconds=RUN_SECONDS)
        client = UpstreamClient(3.0, 10)
        yield ReplicateHarness(replicate_upstream, client)
        await client.aclose()
        return
    server, adapter = cog_server
    receiver.received.clear()
    yield CogHarness(server, adapter, receiver)


def _image_input() -> dict[str, Any]:
    square = (24, 24, 40, 40)
    image = png_with_square(64, 64, (255, 128, 0), (255, 255, 255), square)
    return {"image": data_uri(image), "mask": data_uri(mask_png(64, 64, square)), "prompt": "fill it"}


def _input(harness: Harness) -> dict[str, Any]:
    return inpainting_input() if harness.kind == "replicate" else _image_input()


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_declares_the_capabilities_of_the_table_and_implements_exactly_those(kind: str) -> None:
    implementation = REGISTRY[kind][0]
    assert implementation.capabilities == EXPECTED_CAPABILITIES[kind]
    for capability, method in CAPABILITY_METHODS.items():
        implemented = getattr(implementation, method) is not getattr(Provider, method)
        assert implemented == getattr(EXPECTED_CAPABILITIES[kind], capability), f"{kind}.{method}"


@in_module_loop
async def test_a_created_prediction_starts_under_an_upstream_id_and_runs_to_success(harness: Harness) -> None:
    prediction_id = new_prediction_id()
    created = await harness.create(prediction_id, _input(harness))
    assert created.id and created.status in (Status.STARTING, Status.PROCESSING)
    final = await harness.final(created)
    assert (final.id, final.status, final.error) == (created.id, Status.SUCCEEDED, None)
    assert final.output


@in_module_loop
async def test_refreshing_reads_the_state_anew_where_the_kind_can_be_asked(harness: Harness) -> None:
    created = await harness.create(new_prediction_id(), _input(harness))
    if not harness.provider.capabilities.get_by_id:
        with pytest.raises(NotImplementedError):
            await harness.provider.get(created.id)
        await harness.final(created)  # let the run end before the next test uses the server
        return
    read = await harness.provider.get(created.id)
    assert read.id == created.id and read.status in (Status.STARTING, Status.PROCESSING)
    await harness.final(created)


@in_module_loop
async def test_cancel_stops_a_running_prediction(harness: Harness) -> None:
    created = await harness.create(new_prediction_id(), _input(harness))
    await asyncio.sleep(0.3)
    await harness.cancel(created)
    final = await harness.final(created)
    assert (final.id, final.status) == (created.id, Status.CANCELED)


@in_module_loop
async def test_webhooks_are_trusted_only_where_the_kind_authenticates_them(harness: Harness) -> None:
    payload = {"id": "p1", "status": "succeeded", "output": "data:image/png;base64,AA"}
    upstream = "r8-p1" if harness.kind == "replicate" else f"{getattr(harness, 'server', '')}|p1"
    if harness.kind == "replicate":
        # A Replicate callback is taken as the state only when signed with the account's secret; anything else
        # only says "look again".
        body = json.dumps({**payload, "id": upstream}).encode()
        signed = signed_headers("msg_1", int(time.time()), body)
        await harness.provider.start()  # it learns the account's signing secret in the background
        trusted = await _trusted(harness.provider, Callback(json.loads(body), body, signed), upstream)
        assert (trusted.id, trusted.status, trusted.output) == (upstream, Status.SUCCEEDED, payload["output"])
        for forged in ({**signed, "webhook-signature": "v1,AAAA"}, {"authorization": f"Bearer {UPSTREAM_TOKEN}"}, {}):
            assert harness.provider.parse_webhook(Callback(json.loads(body), body, forged), upstream) is None
        stale = signed_headers("msg_1", int(time.time()) - 3600, body)  # a replay from an hour ago
        assert harness.provider.parse_webhook(Callback(json.loads(body), body, stale), upstream) is None
        other = json.dumps({**payload, "id": "r8-other"}).encode()
        assert harness.provider.parse_webhook(Callback(json.loads(other), other, signed_headers("m", int(time.time()), other)), upstream) is None
        await harness.provider.aclose()
        return
    trusted = harness.provider.parse_webhook(Callback(payload, b"", {"authorization": f"Bearer {SERVER_TOKEN}"}), upstream)
    assert trusted is not None and (trusted.id, trusted.status, trusted.output) == (upstream, Status.SUCCEEDED, payload["output"])
    for forged in ({}, {"authorization": "Bearer wrong"}, {"authorization": SERVER_TOKEN}):
        with pytest.raises(Unauthenticated):
            harness.provider.parse_webhook(Callback(payload, b"", forged), upstream)


async def _trusted(provider: Provider, callback: Callback, upstream: str, timeout: float = 5) -> UpstreamPrediction:
    """The state the provider takes from `callback`, once it has learnt the signing secret."""
    deadline = time.monotonic() + timeout
    while (reported := provider.parse_webhook(callback, upstream)) is None:
        assert time.monotonic() < deadline, "the signed webhook was never trusted"
        await asyncio.sleep(0.05)
    return reported


@in_module_loop
async def test_input_the_upstream_refuses_is_invalid_input_with_its_fields(harness: Harness) -> None:
    given = {**_input(harness), "guidance_scale": "loud"} if harness.kind == "cog" else {"prompt": "no image"}
    with pytest.raises(InvalidInput) as refused:
        await harness.create(new_prediction_id(), given)
    fields = {field["field"] for field in refused.value.invalid_fields}
    assert fields == ({"input.guidance_scale"} if harness.kind == "cog" else {"input"})


@in_module_loop
async def test_a_busy_or_unavailable_upstream_is_retryable_and_an_unreachable_one_an_upstream_error(harness: Harness) -> None:
    if harness.kind == "replicate":
        assert isinstance(harness, ReplicateHarness)
        harness.upstream.controls.inject(Fault(route="create", status=503, retry_after=7))
        with pytest.raises(UpstreamUnavailable) as unavailable:
            await harness.create(new_prediction_id(), _input(harness))
        assert unavailable.value.retry_after == 7
    else:
        assert isinstance(harness, CogHarness)
        running = await harness.create(new_prediction_id(), _input(harness))
        with pytest.raises(UpstreamUnavailable):  # its one slot is taken
            await harness.create(new_prediction_id(), _input(harness))
        await harness.final(running)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamError) as unreachable:
        await _unreachable(harness, closed)
    assert not isinstance(unreachable.value, UpstreamUnavailable)
    assert "127.0.0.1" not in unreachable.value.detail


async def _unreachable(harness: Harness, url: str) -> None:
    client = UpstreamClient(2.0, 2)
    try:
        if harness.kind == "replicate":
            config = ProviderConfig(kind="replicate", base_url=url, tokens=(SecretStr(UPSTREAM_TOKEN),))
            await ReplicateProvider("replicate", config, client).get("r8-p1")
        else:
            request = CreateRequest("p1", "m", Route("cog", TargetKind.SERVER, ""), {"prompt": base64.b64encode(b"x").decode()})
            await CogAdapter(client, {}).start(request, url)
    finally:
        await client.aclose()
