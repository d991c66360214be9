"""A request's `X-Request-Id` travels upstream: on the create, the refresh and the cancel a request makes to a
Replicate-protocol upstream (the emulator), and on the calls to a Cog server, including the dispatch of the
queued prediction, which the dispatcher makes after the create has answered."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import INPAINTING_VERSION, SIMPLE_SCHEMA, Gateway, Upstream, gateway_settings, inpainting_input, run_gateway
from tests.servers import free_port, serve_in_thread

COG_VERSION = "7d" * 32
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def _upstream_ids(upstream: Upstream, method: str, path_suffix: str) -> list[str | None]:
    return [r.headers.get("x-request-id") for r in upstream.requests(method, path_suffix)]


def test_a_create_sends_the_clients_request_id_upstream_and_back(api: httpx.Client, replicate_upstream: Upstream) -> None:
    created = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"X-Request-Id": "abc-123"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"] == "abc-123"
    assert _upstream_ids(replicate_upstream, "POST", "/v1/predictions") == ["abc-123"]


def test_a_create_without_one_sends_the_generated_id_upstream(api: httpx.Client, replicate_upstream: Upstream) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
    assert created.status_code == 201, created.text
    generated = created.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(generated)
    assert _upstream_ids(replicate_upstream, "POST", "/v1/predictions") == [generated]


def test_a_refreshing_get_and_a_cancel_send_their_own_ids(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(run_seconds=30)  # unfinished: a GET refreshes it, a cancel reaches it
    created = api.post(
        "/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers={"X-Request-Id": "c-1"}
    )
    upstream_id = replicate_upstream.controls.predictions()[-1]["id"]
    time.sleep(0.2)  # older than the gateway's refresh_after_seconds (0.1)
    read = api.get(f"/predictions/{created.json()['id']}", headers={"X-Request-Id": "g-1"})
    assert read.headers["x-request-id"] == "g-1"
    # Follow-ups poll in the background with no id; the refresh the GET made carries the GET's.
    assert "g-1" in _upstream_ids(replicate_upstream, "GET", f"/predictions/{upstream_id}")
    canceled = api.post(f"/predictions/{created.json()['id']}/cancel", headers={"X-Request-Id": "x-1"})
    assert canceled.status_code == 200, canceled.text
    assert _upstream_ids(replicate_upstream, "POST", f"/predictions/{upstream_id}/cancel") == ["x-1"]


@dataclass
class FakeCogServer:
    """A plain HTTP server answering as a Cog server does, recording each request's `X-Request-Id` (health
    checks left out: the dispatcher sends them all the time)."""

    url: str = ""
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return JSONResponse({"status": "READY"})

        async def openapi(request: Request) -> Response:
            self._record(request)
            return JSONResponse(SIMPLE_SCHEMA)

        async def start(request: Request) -> Response:
            self._record(request)
            return JSONResponse({"id": request.path_params["id"], "status": "processing"}, status_code=202)

        async def cancel(request: Request) -> Response:
            self._record(request)
            return JSONResponse({})

        return Starlette(
            routes=[
                Route("/health-check", health),
                Route("/openapi.json", openapi),
                Route("/predictions/{id}", start, methods=["PUT"]),
                Route("/predictions/{id}/cancel", cancel, methods=["POST"]),
            ]
        )

    def _record(self, request: Request) -> None:
        with self.lock:
            self.seen.append((request.method, request.url.path, request.headers.get("x-request-id")))

    def ids(self, method: str, path: str) -> list[str | None]:
        with self.lock:
            return [request_id for m, p, request_id in self.seen if m == method and p == path]


@pytest.fixture(scope="module")
def cog_server() -> Iterator[FakeCogServer]:
    server = FakeCogServer()
    with serve_in_thread(server.app()) as url:
        server.url = url
        yield server


@pytest.fixture(scope="module")
def cog_gateway(redis_url: str, cog_server: FakeCogServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    catalog = tmp_path_factory.mktemp("cog-ids") / "catalog.toml"
    catalog.write_text(
        f"""
[providers.fake-cog]
kind = "cog"
servers = ["{cog_server.url}"]
timeout = 3

[[models]]
name = "acme/fake-cog"

[[models.versions]]
id = "{COG_VERSION}"
routes = [{{ provider = "fake-cog" }}]
"""
    )
    with run_gateway(gateway_settings(redis_url, catalog, free_port(), files_dir=Path(catalog.parent, "files"))) as running:
        yield running


def test_a_cog_create_dispatches_with_its_request_id_and_a_cancel_sends_its_own(
    cog_gateway: Gateway, cog_server: FakeCogServer
) -> None:
    with cog_gateway.client(cog_gateway.new_key()[0]) as api:
        created = api.post(
            "/predictions", json={"version": COG_VERSION, "input": {"text": "hi"}}, headers={"X-Request-Id": "cog-1"}
        )
        assert created.status_code == 201, created.text
        prediction_id = created.json()["id"]
        assert created.headers["x-request-id"] == "cog-1"
        assert cog_server.ids("GET", "/openapi.json") == ["cog-1"]  # the schema, read while validating the create
        deadline = time.monotonic() + 10
        while not cog_server.ids("PUT", f"/predictions/{prediction_id}"):
            assert time.monotonic() < deadline, "the prediction was never dispatched"
            time.sleep(0.05)
        assert cog_server.ids("PUT", f"/predictions/{prediction_id}") == ["cog-1"]
        canceled = api.post(f"/predictions/{prediction_id}/cancel", headers={"X-Request-Id": "cog-2"})
        assert canceled.status_code == 200, canceled.text
        assert cog_server.ids("POST", f"/predictions/{prediction_id}/cancel") == ["cog-2"]
