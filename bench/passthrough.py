"""Targets (c) and (d): a minimal Starlette passthrough to the upstream, with no features, served exactly as the
gateway is served (uvicorn, httptools with the header deadline, no access log, the same keep-alive), forwarding
over aiohttp (as the gateway does) or over httpx's default transport.

    python -m bench.passthrough aiohttp|httpx UPSTREAM_ROOT PORT
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import Settings
from gateway.draining import Draining
from gateway.serving import http_protocol

Forward = Callable[[str, str, bytes, str], Awaitable[tuple[int, bytes]]]  # method, path, body, auth → status, body


@contextlib.asynccontextmanager
async def _aiohttp(root: str) -> AsyncIterator[Forward]:
    async with aiohttp.ClientSession(root, connector=aiohttp.TCPConnector(limit=100)) as session:

        async def forward(method: str, path: str, body: bytes, auth: str) -> tuple[int, bytes]:
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            async with session.request(method, path, data=body or None, headers=headers) as response:
                return response.status, await response.read()

        yield forward


@contextlib.asynccontextmanager
async def _httpx(root: str) -> AsyncIterator[Forward]:
    async with httpx.AsyncClient(base_url=root) as client:

        async def forward(method: str, path: str, body: bytes, auth: str) -> tuple[int, bytes]:
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            response = await client.request(method, path, content=body or None, headers=headers)
            return response.status_code, response.content

        yield forward


CLIENTS = {"aiohttp": _aiohttp, "httpx": _httpx}


def create_app(client: str, upstream: str) -> Starlette:
    """The passthrough: POST /v1/predictions and GET /v1/predictions/{id}, relayed as they are."""
    forwarder: dict[str, Forward] = {}

    async def relay(request: Request) -> Response:
        status, body = await forwarder["forward"](
            request.method, request.url.path, await request.body(), request.headers.get("authorization", "")
        )
        return Response(body, status_code=status, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with CLIENTS[client](upstream) as forward:
            forwarder["forward"] = forward
            yield

    routes = [Route("/v1/predictions", relay, methods=["POST"]), Route("/v1/predictions/{id}", relay, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the minimal passthrough")
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("upstream")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    uvicorn.run(  # as gateway.cli.serve runs the gateway
        create_app(args.client, args.upstream),
        host="127.0.0.1",
        port=args.port,
        log_level=defaults.log_level,
        log_config=None,
        access_log=False,
        timeout_keep_alive=defaults.keep_alive_seconds,
        timeout_graceful_shutdown=30,
        http=http_protocol(defaults.header_timeout_seconds, Draining()),  # never drained: it has no waits
    )


if __name__ == "__main__":
    main()
