"""Which HTTP client carries the forwarding path: the gateway's `UpstreamClient` (aiohttp) against httpx's
default transport and httpx over the aiohttp transport (`httpx-aiohttp`), side by side in one run.

Each client sends the same small JSON POST to a local upstream that answers a canned 201 prediction, with
`--concurrency` requests in flight, for `--seconds` each, in one event loop. The report gives requests/s and
each client's ratio to the gateway's.

    pip install httpx-aiohttp==0.2.0   # only for this comparison
    python bench/upstream_client.py [--concurrency 32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.providers.http import UpstreamClient  # noqa: E402
from tests.servers import serve_in_thread  # noqa: E402

PREDICTION = b'{"id":"vgcm4plb7tgzlyznry5d5jkgvu","model":"a/b","version":"1","input":{},"output":null,"status":"starting"}'
BODY = {"version": "1" * 64, "input": {"prompt": "a studio photo of a corgi", "steps": 25}}
Send = Callable[[], Awaitable[int]]


async def _canned(request: Request) -> Response:
    await request.body()
    return Response(PREDICTION, status_code=201, media_type="application/json")


async def _run(send: Send, concurrency: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            assert await send() == 201
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def _httpx_send(client: httpx.AsyncClient, url: str) -> Send:
    async def send() -> int:
        return (await client.post(url, json=BODY, headers={"Authorization": "Bearer r8_x"})).status_code

    return send


async def main(concurrency: int, seconds: float, rounds: int) -> None:
    with serve_in_thread(Starlette(routes=[Route("/v1/predictions", _canned, methods=["POST"])])) as root:
        url = f"{root}/v1/predictions"
        gateway = UpstreamClient(timeout=30, max_connections=100)
        clients: dict[str, Send] = {}
        closers: list[Callable[[], Awaitable[None]]] = [gateway.aclose]

        async def gateway_send() -> int:
            return (await gateway.request("POST", url, headers={"Authorization": "Bearer r8_x"}, json_body=BODY)).status

        clients["gateway UpstreamClient (aiohttp)"] = gateway_send
        limits = httpx.Limits(max_connections=100)
        plain = httpx.AsyncClient(limits=limits)
        closers.append(plain.aclose)
        clients["httpx, default transport"] = _httpx_send(plain, url)
        try:
            from httpx_aiohttp import AiohttpTransport

            over_aiohttp = httpx.AsyncClient(transport=AiohttpTransport())
            closers.append(over_aiohttp.aclose)
            clients["httpx over aiohttp (httpx-aiohttp)"] = _httpx_send(over_aiohttp, url)
        except ImportError:
            print("(httpx-aiohttp not installed: that row is left out)")
        rates: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(rounds):  # interleaved, so drift on a noisy machine hits every client alike
            for name, send in clients.items():
                await send()  # warm the pool
                rates[name].append(await _run(send, concurrency, seconds))
        for close in closers:
            await close()
    reference = statistics.median(rates["gateway UpstreamClient (aiohttp)"])
    print(f"{concurrency} requests in flight, median of {rounds} rounds of {seconds:g}s")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<38} {rate:>8.0f} req/s   {rate / reference:>5.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.concurrency, arguments.seconds, arguments.rounds))
