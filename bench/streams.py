"""Memory per open event stream on one gateway process: RSS with N streams open, against the same process idle.

The gateway serves a model that streams (`stream = true`) on a Cog server that never answers, so its
predictions stay `starting` and their streams stay open, waiting. N predictions are created, then all N streams
opened at once from raw sockets (each reads its response head, then idles)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from bench.gateway_target import RunningGateway, gateway
from bench.processes import cpu_seconds, rss_bytes
from bench.table import Row

VERSION = "5e" * 32
CATALOG = f"""
[providers.nowhere]
kind = "cog"
servers = ["http://127.0.0.1:9"]   # the discard port: nothing answers, so predictions wait in the queue

[[models]]
name = "bench/stream"

[[models.versions]]
id = "{VERSION}"
schema = "{{schema}}"
stream = true                      # the catalog's word: its schema does not say (and its servers cannot)
routes = [{{ provider = "nowhere" }}]
"""
SCHEMA = '{"openapi": "3.0.2", "components": {"schemas": {"Input": {"type": "object"}, "Output": {"type": "string"}}}}'


def open_streams(scratch: Path, count: int, settle_seconds: float) -> Row:
    schema = scratch / "schema.json"
    scratch.mkdir(parents=True, exist_ok=True)
    schema.write_text(SCHEMA)
    with gateway(scratch / "streams", CATALOG.replace("{schema}", str(schema))) as running:
        return asyncio.run(_measure(running, count, settle_seconds))


async def _measure(running: RunningGateway, count: int, settle_seconds: float) -> Row:
    headers = {"Authorization": running.auth}
    async with httpx.AsyncClient(base_url=running.url, headers=headers, timeout=60) as client:
        urls = await _create(client, count)
    await asyncio.sleep(settle_seconds)
    before = rss_bytes(running.pid)
    done, events = asyncio.Event(), [asyncio.Event() for _ in urls]
    started = time.monotonic()
    tasks = [asyncio.create_task(_hold(url, opened, done)) for url, opened in zip(urls, events, strict=True)]
    await asyncio.gather(*(event.wait() for event in events))
    took, cpu = time.monotonic() - started, cpu_seconds(running.pid)
    await asyncio.sleep(settle_seconds)  # every stream has re-read its record
    during, cpu = rss_bytes(running.pid), cpu_seconds(running.pid) - cpu
    done.set()
    await asyncio.gather(*tasks)
    note = (
        f"{(during - before) / count / 1024:.1f} KiB per stream; all open within {took:.2f} s; "
        f"{100 * cpu / settle_seconds:.0f}% of a core while they wait"
    )
    return Row("open streams", "f", requests=count, rss_before=before, rss_after=during, note=note)


async def _create(client: httpx.AsyncClient, count: int) -> list[str]:
    """Stream URLs of `count` new predictions, 32 creates in flight."""
    limit, urls = asyncio.Semaphore(32), []

    async def one() -> None:
        async with limit:
            response = await client.post("/v1/predictions", json={"version": VERSION, "input": {}})
            response.raise_for_status()
            urls.append(response.json()["urls"]["stream"])

    await asyncio.gather(*(one() for _ in range(count)))
    return urls


async def _hold(url: str, opened: asyncio.Event, done: asyncio.Event) -> None:
    """GET the stream on a raw socket, read its head, then hold it open until `done`."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"a stream did not open: {head[:100]!r}")
    opened.set()
    await done.wait()
    writer.close()
