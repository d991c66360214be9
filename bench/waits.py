"""`Prefer: wait` on the gateway in front of the Replicate emulator: creates on a model that runs one second, in
a closed loop; and many waits held by one process at once, each answered when its prediction completes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.emulated import Running, gateway_on_emulator
from bench.gateway_target import CREATE_BODY
from bench.http_scenarios import Plan, closed_loop
from bench.load import percentile
from bench.processes import rss_bytes
from bench.table import Row
from bench.targets import Endpoint
from gateway.timestamps import parse_timestamp

LAUNCH_PER_SECOND = 1000  # how fast the waits are opened: a burst of thousands of connects overflows the backlog


def one_second_model(plan: Plan) -> Row:
    with gateway_on_emulator(public_base_url="self") as running:
        running.control("configure", start_delay=0.0, run_seconds=1.0)
        endpoint = Endpoint("f", running.gateway, running.pid, running.auth, redis_url=running.redis_url)
        row = closed_loop("create, Prefer: wait, 1 s model", endpoint, endpoint.create(("Prefer", "wait")), plan)
    row.note = "the model runs 1 s upstream; p50 over it: " + (f"{row.p50_ms - 1000:.0f} ms" if row.p50_ms else "n/a")
    return row


@dataclass(frozen=True)
class _Held:
    peak_rss: int
    lateness: list[float]  # seconds from the gateway's applying each prediction's completion to its answer's arrival
    upstream_lateness: list[float]  # the same from the upstream's completion (adds the upstream's webhook to us)
    failures: int  # answers that were not the succeeded prediction


def concurrent(count: int, run_seconds: float) -> Row:
    """`count` creates with `Prefer: wait=60` held at once on one gateway process; its predictions run
    `run_seconds` upstream (longer than it takes to open them all), then complete and are answered."""
    with gateway_on_emulator(public_base_url="self") as running:
        running.control("configure", start_delay=0.0, run_seconds=run_seconds)
        asyncio.run(_hold(running, 20))  # warm up: pools, caches, code paths
        before = rss_bytes(running.pid)
        held = asyncio.run(_hold(running, count))
    late, upstream = sorted(held.lateness), sorted(held.upstream_lateness)
    return Row(
        "concurrent waits",
        "f",
        requests=count,
        p50_ms=percentile(late, 0.5) * 1000,
        p99_ms=percentile(late, 0.99) * 1000,
        max_ms=late[-1] * 1000 if late else None,
        errors=held.failures,
        rss_before=before,
        rss_after=held.peak_rss,
        note=f"latency: answer after the gateway applied the completion (after the upstream's: p50 "
        f"{percentile(upstream, 0.5) * 1000:.0f}, max {upstream[-1] * 1000 if upstream else float('nan'):.0f} ms); "
        f"RSS idle→peak, {(held.peak_rss - before) / max(count, 1) / 1024:.1f} KiB per wait",
    )


async def _hold(running: Running, count: int) -> _Held:
    headers = {"Authorization": running.auth, "Prefer": "wait=60"}
    lateness: list[float] = []
    upstream_lateness: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def one() -> None:
            nonlocal failures
            try:
                async with session.post(f"{running.gateway}/v1/predictions", json=CREATE_BODY, headers=headers) as response:
                    body = await response.json()
                    arrived = time.time()
            except (aiohttp.ClientError, TimeoutError):
                failures += 1
                return
            if response.status != 201 or body.get("status") != "succeeded":
                failures += 1
                return
            applied = (parse_timestamp(body["created_at"]) or 0) + body["metrics"]["total_time"]
            lateness.append(arrived - applied)
            upstream_lateness.append(arrived - (parse_timestamp(body["completed_at"]) or 0))

        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / LAUNCH_PER_SECOND)
        peak = 0
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_bytes(running.pid))
            await asyncio.sleep(0.2)
    return _Held(peak, lateness, upstream_lateness, failures)
