"""Memory of one gateway process holding many `Prefer: wait` requests open at once.

Starts one gateway process in front of the Replicate emulator, whose predictions run longer than any wait and
which sends no webhooks (nothing but the waiting is measured); opens `--requests` concurrent creates with
`Prefer: wait=<--wait>`, samples the gateway's resident memory and CPU time while they wait, and reports the
growth per waiting request and how the waits ended (each should answer `starting` once its wait is up, as the
official clients expect of an unfinished prediction).

    python bench/concurrent_waits.py [--requests 2000] [--wait 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

import aiohttp
from emulated import CREATE_BODY, Running, cpu_seconds, gateway_on_emulator, rss_bytes


async def hold_waits(running: Running, count: int, wait: int) -> tuple[int, list[str]]:
    """Send `count` waiting creates at once; the peak RSS seen while they wait, and each response's status."""
    headers = {"Authorization": f"Bearer {running.token}", "Prefer": f"wait={wait}"}
    peak = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=wait + 300)) as session:

        async def one() -> str:
            async with session.post(f"{running.gateway}/v1/predictions", json=CREATE_BODY, headers=headers) as response:
                return str((await response.json())["status"]) if response.status == 201 else f"HTTP {response.status}"

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_bytes(running.pid))
            await asyncio.sleep(0.2)
        return peak, [task.result() for task in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--wait", type=int, default=60, help="seconds each request waits (Prefer: wait=n)")
    args = parser.parse_args()
    # Nothing re-reads the predictions upstream while they are waited on (long refresh and polling intervals).
    with gateway_on_emulator(log_level="warning", refresh_after_seconds="3600", poll_first_seconds="3600") as running:
        running.control("configure", run_seconds=args.wait + 600)
        running.control("drop_webhooks", drop=True)
        asyncio.run(hold_waits(running, 20, 1))  # warm up: pools, caches, code paths
        time.sleep(1)
        baseline, cpu, started = rss_bytes(running.pid), cpu_seconds(running.pid), time.monotonic()
        peak, statuses = asyncio.run(hold_waits(running, args.requests, args.wait))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(running.pid) - cpu
    print(f"{args.requests} concurrent requests with Prefer: wait={args.wait} on predictions that outlast them")
    print(f"  gateway RSS before: {baseline / 2**20:.1f} MiB, peak while waiting: {peak / 2**20:.1f} MiB")
    print(f"  per waiting request: {(peak - baseline) / args.requests / 1024:.1f} KiB")
    print(f"  gateway CPU: {cpu:.1f} s over {elapsed:.1f} s ({100 * cpu / elapsed:.0f}% of a core)")
    print(f"  answers: {dict(collections.Counter(statuses))}")


if __name__ == "__main__":
    main()
