"""Memory per open event stream on one gateway process: RSS with N streams open, against the same process idle.

A gateway process (`gateway serve`) on its own Valkey serves a catalog whose one model streams (`stream = true`)
and runs on a Cog server that never answers, so its predictions stay `starting` and their streams stay open,
waiting. The bench creates N predictions, notes the gateway's RSS, opens all N streams at once from raw sockets
on 127.0.0.1 (each reads its response head, then idles), waits for the RSS to settle and reports the difference
per stream, at each N given. Everything it starts stops with it.

    python bench/sse_memory.py [--streams 500 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulated import cpu_seconds, rss_bytes  # noqa: E402

from gateway.store.embedded import EmbeddedRedis  # noqa: E402
from tests.servers import free_port  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-0123456789"
VERSION = "5e" * 32
CATALOG = f"""
[providers.nowhere]
kind = "cog"
servers = ["http://127.0.0.1:9"]   # the discard port: nothing answers, so predictions wait in the queue

[[models]]
name = "bench/stream"

[[models.versions]]
id = "{VERSION}"
schema = "schema.json"
stream = true                      # the catalog's word: its schema does not say (and its servers cannot)
routes = [{{ provider = "nowhere" }}]
"""
SCHEMA = '{"openapi": "3.0.2", "components": {"schemas": {"Input": {"type": "object"}, "Output": {"type": "string"}}}}'
SETTLE_SECONDS = 5.0


async def create(client: httpx.AsyncClient, count: int) -> list[str]:
    """Stream URLs of `count` new predictions, 32 creates in flight."""
    limit, urls = asyncio.Semaphore(32), []

    async def one() -> None:
        async with limit:
            response = await client.post("/v1/predictions", json={"version": VERSION, "input": {}})
            response.raise_for_status()
            urls.append(response.json()["urls"]["stream"])

    await asyncio.gather(*(one() for _ in range(count)))
    return urls


async def open_stream(url: str, opened: asyncio.Event, done: asyncio.Event) -> None:
    """GET the stream on a raw socket, read its head, then hold it open until `done`."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    opened.set()
    await done.wait()
    writer.close()


async def measure(api: str, pid: int, token: str, counts: list[int]) -> None:
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for count in counts:
            urls = await create(client, count)
            await asyncio.sleep(SETTLE_SECONDS)
            before = rss_bytes(pid) // 1024
            done, events = asyncio.Event(), [asyncio.Event() for _ in urls]
            started = time.monotonic()
            tasks = [asyncio.create_task(open_stream(url, opened, done)) for url, opened in zip(urls, events, strict=True)]
            await asyncio.gather(*(event.wait() for event in events))
            took = time.monotonic() - started
            cpu = cpu_seconds(pid)
            await asyncio.sleep(SETTLE_SECONDS)  # every stream has re-read its record a few times
            during, cpu = rss_bytes(pid) // 1024, (cpu_seconds(pid) - cpu) / SETTLE_SECONDS
            done.set()
            await asyncio.gather(*tasks)
            per_stream = (during - before) * 1024 / count
            print(
                f"{count:5d} streams: RSS {before / 1024:.1f} MiB idle -> {during / 1024:.1f} MiB open "
                f"= {per_stream / 1024:.1f} KiB per stream (all open within {took:.2f}s; "
                f"{100 * cpu:.0f}% of a CPU while they wait)"
            )
            await asyncio.sleep(SETTLE_SECONDS)  # the closed streams are gone before the next round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[500, 2000])
    counts = parser.parse_args().streams
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(counts) + 1024)), hard))
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        catalog = Path(tmp) / "catalog.toml"
        catalog.write_text(CATALOG)
        (Path(tmp) / "schema.json").write_text(SCHEMA)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
            "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_CATALOG": str(catalog),
            "GATEWAY_PORT": str(port),
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_DATA_DIR": str(Path(tmp) / "data"),
            "GATEWAY_LOG_LEVEL": "warning",
        }
        # Its stdout is the newcomer's welcome, not wanted here; warnings and errors still show on stderr.
        process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stdout=subprocess.DEVNULL)
        try:
            root = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{root}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{root}/admin/v1/keys", headers=admin, json={"tenant": "bench"}).json()["token"]
            asyncio.run(measure(root, process.pid, token, counts))
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
