"""Memory of one gateway process holding many `Prefer: wait` requests open at once.

Starts a Valkey, the Replicate emulator (as the upstream: its predictions run longer than any wait, and it sends
no webhooks, so nothing but the waiting is measured) and one gateway process; opens `--requests` concurrent
creates with `Prefer: wait=<--wait>`, samples the gateway's resident memory and CPU time while they wait, and
reports the growth per waiting request and how the waits ended (each should answer `starting` once its wait is
up, as the official clients expect of an unfinished prediction).

    python bench/concurrent_waits.py [--requests 2000] [--wait 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def hold_waits(url: str, token: str, count: int, pid: int, wait: int) -> tuple[int, list[str]]:
    """Send `count` waiting creates at once; the peak RSS seen while they wait, and each response's status."""
    body = {"version": INPAINTING_VERSION, "input": inpainting_input(image=INLINE_PNG, mask=INLINE_PNG)}
    headers = {"Authorization": f"Bearer {token}", "Prefer": f"wait={wait}"}
    peak = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=wait + 300)) as session:

        async def one() -> str:
            async with session.post(f"{url}/v1/predictions", json=body, headers=headers) as response:
                return str((await response.json())["status"]) if response.status == 201 else f"HTTP {response.status}"

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.2)
        return peak, [task.result() for task in tasks]


def serve_upstream(port: int, run_seconds: float) -> None:
    """The emulator in a process of its own, so that the clients' load does not slow the upstream down; quiet
    (no webhooks) and slower than any wait."""
    inpainting = EmulatedModel("stability-ai", "stable-diffusion-inpainting", {INPAINTING_VERSION: INPAINTING_SCHEMA})
    emulator = create_replicate_emulator(tokens=[UPSTREAM_TOKEN], models=[inpainting])
    emulator.state.emulator.configure(run_seconds=run_seconds)
    emulator.state.emulator.drop_webhooks(True)
    uvicorn.run(emulator, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


@contextlib.contextmanager
def upstream_process(wait: int) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve-upstream", str(port), "--wait", str(wait)]
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
    parser.add_argument("--wait", type=int, default=60, help="seconds each request waits (Prefer: wait=n)")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.wait + 600)
        return
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis") as redis,
        upstream_process(args.wait) as upstream,
    ):
        catalog = Path(scratch) / "catalog.toml"
        text = TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream)
        catalog.write_text(text.replace("timeout = 3\n", "timeout = 30\n"))
        # Nothing re-reads the predictions upstream while they are waited on (long refresh and polling intervals):
        # what is measured is the waiting itself.
        settings = {"log_level": "warning", "refresh_after_seconds": "3600", "poll_first_seconds": "3600"}
        with gateway_process(redis.url, catalog, Path(scratch) / "gateway", **settings) as (url, _, process):
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "bench"}, headers=admin).json()["token"]
            asyncio.run(hold_waits(url, token, 20, process.pid, 1))  # warm up: pools, caches, code paths
            time.sleep(1)
            baseline, cpu = rss_bytes(process.pid), cpu_seconds(process.pid)
            started = time.monotonic()
            peak, statuses = asyncio.run(hold_waits(url, token, args.requests, process.pid, args.wait))
            elapsed, cpu = time.monotonic() - started, cpu_seconds(process.pid) - cpu
    print(f"{args.requests} concurrent requests with Prefer: wait={args.wait} on predictions that outlast them")
    print(f"  gateway RSS before: {baseline / 2**20:.1f} MiB, peak while waiting: {peak / 2**20:.1f} MiB")
    print(f"  per waiting request: {(peak - baseline) / args.requests / 1024:.1f} KiB")
    print(f"  gateway CPU: {cpu:.1f} s over {elapsed:.1f} s ({100 * cpu / elapsed:.0f}% of a core)")
    print(f"  answers: {dict(collections.Counter(statuses))}")


if __name__ == "__main__":
    main()
