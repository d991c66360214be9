"""Memory of one gateway process holding many `Prefer: wait` requests open at once.

Starts a Valkey, the Replicate emulator (as the upstream, its predictions running `--run-seconds`) and one
gateway process; opens `--requests` concurrent creates with `Prefer: wait=60`, samples the gateway's resident
memory while they wait, and reports the growth per waiting request and whether every one came back finished.

    python bench/concurrent_waits.py [--requests 2000] [--run-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.store.embedded import EmbeddedRedis  # noqa: E402
from tests.conftest import (  # noqa: E402
    ADMIN_TOKEN,
    INPAINTING_SCHEMA,
    INPAINTING_VERSION,
    TEST_CATALOG,
    UPSTREAM_TOKEN,
    gateway_process,
    inpainting_input,
)
from tests.emulator import EmulatedModel, create_replicate_emulator  # noqa: E402
from tests.servers import free_port  # noqa: E402

INLINE_PNG = "data:image/png;base64,iVBORw0KGgo="


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def hold_waits(url: str, token: str, count: int, pid: int) -> tuple[int, list[str]]:
    """Send `count` waiting creates at once; the peak RSS seen while they wait, and each response's status."""
    body = {"version": INPAINTING_VERSION, "input": inpainting_input(image=INLINE_PNG, mask=INLINE_PNG)}
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=60"}
    peak = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=240)) as session:

        async def one() -> str:
            async with session.post(f"{url}/v1/predictions", json=body, headers=headers) as response:
                return str((await response.json())["status"]) if response.status == 201 else f"HTTP {response.status}"

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.2)
        return peak, [task.result() for task in tasks]


def serve_upstream(port: int, run_seconds: float) -> None:
    """The emulator in a process of its own, so that the clients' load does not slow the upstream down."""
    inpainting = EmulatedModel("stability-ai", "stable-diffusion-inpainting", {INPAINTING_VERSION: INPAINTING_SCHEMA})
    emulator = create_replicate_emulator(tokens=[UPSTREAM_TOKEN], models=[inpainting])
    emulator.state.emulator.configure(run_seconds=run_seconds)
    uvicorn.run(emulator, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


@contextlib.contextmanager
def upstream_process(run_seconds: float) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve-upstream", str(port), "--run-seconds", str(run_seconds)]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/v1/account")
                break
            assert time.monotonic() < deadline, "the upstream did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--run-seconds", type=float, default=20.0)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.run_seconds)
        return
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis") as redis,
        upstream_process(args.run_seconds) as upstream,
    ):
        catalog = Path(scratch) / "catalog.toml"
        text = TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream)
        catalog.write_text(text.replace("timeout = 3\n", "timeout = 30\n"))
        settings = {"log_level": "warning", "public_base_url": "self"}
        with gateway_process(redis.url, catalog, Path(scratch) / "gateway", **settings) as (url, _, process):
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "bench"}, headers=admin).json()["token"]
            asyncio.run(hold_waits(url, token, 20, process.pid))  # warm up: pools, caches, code paths
            time.sleep(1)
            baseline = rss_bytes(process.pid)
            started = time.monotonic()
            peak, statuses = asyncio.run(hold_waits(url, token, args.requests, process.pid))
            elapsed = time.monotonic() - started
    finished = statuses.count("succeeded")
    print(f"{args.requests} concurrent Prefer: wait requests, predictions running {args.run_seconds:g}s")
    print(f"  gateway RSS before: {baseline / 2**20:.1f} MiB, peak while waiting: {peak / 2**20:.1f} MiB")
    print(f"  per waiting request: {(peak - baseline) / args.requests / 1024:.1f} KiB")
    print(f"  answered succeeded: {finished}/{args.requests} in {elapsed:.1f}s; others: {sorted(set(statuses) - {'succeeded'})}")


if __name__ == "__main__":
    main()
