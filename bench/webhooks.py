"""Terminal webhook deliveries: from a prediction's terminal state in the gateway to the receipt of its
`completed` webhook, for many predictions on the Replicate emulator, with a receiver in this process."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.emulated import Running, gateway_on_emulator
from bench.gateway_target import CREATE_BODY
from bench.load import percentile
from bench.processes import cpu_seconds, rss_bytes
from bench.table import Row
from gateway.timestamps import parse_timestamp
from tests.servers import serve_in_thread

CONCURRENCY = 32  # creates in flight
DEADLINE_SECONDS = 120  # for the last webhook after the last create


class _Receiver:
    """Records, for each terminal webhook, (gateway terminal time, arrival time)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    async def receive(self, request: Request) -> Response:
        arrived = time.time()
        body = orjson.loads(await request.body())
        applied = (parse_timestamp(body["created_at"]) or 0) + body["metrics"]["total_time"]
        with self._lock:
            self.spans.append((applied, arrived))
        return Response(status_code=204)


def deliveries(count: int) -> Row:
    receiver = _Receiver()
    hooks = Starlette(routes=[Route("/hook", receiver.receive, methods=["POST"])])
    settings = {"public_base_url": "self", "webhook_allowed_networks": "127.0.0.0/8"}
    with serve_in_thread(hooks) as receiver_url, gateway_on_emulator(**settings) as running:
        running.control("configure", start_delay=0.01, run_seconds=0.05)
        before, cpu = rss_bytes(running.pid), cpu_seconds(running.pid)
        failed = asyncio.run(_create(running, f"{receiver_url}/hook", count))
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(receiver.spans) < count - failed and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu, after = cpu_seconds(running.pid) - cpu, rss_bytes(running.pid)
    spans = sorted(arrived - applied for applied, arrived in receiver.spans)
    first = min((applied for applied, _ in receiver.spans), default=0.0)
    last = max((arrived for _, arrived in receiver.spans), default=0.0)
    return Row(
        "terminal webhooks",
        "f",
        requests=len(spans),
        rate=len(spans) / (last - first) if last > first else None,
        p50_ms=percentile(spans, 0.5) * 1000,
        p99_ms=percentile(spans, 0.99) * 1000,
        max_ms=spans[-1] * 1000 if spans else None,
        errors=count - len(spans),
        rss_before=before,
        rss_after=after,
        cpu_per_1k=1000 * cpu / max(count, 1),
        note=f"latency: terminal state → receipt; req/s: deliveries a second; {CONCURRENCY} creates in flight",
    )


async def _create(running: Running, webhook: str, count: int) -> int:
    """Create `count` predictions with a terminal webhook, `CONCURRENCY` at a time; how many failed."""
    body = orjson.dumps({**CREATE_BODY, "webhook": webhook, "webhook_events_filter": ["completed"]})
    headers = {"Authorization": running.auth, "Content-Type": "application/json"}
    queue = iter(range(count))
    failed = 0
    async with aiohttp.ClientSession(running.gateway, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            nonlocal failed
            for _ in queue:
                try:
                    async with session.post("/v1/predictions", data=body, headers=headers) as response:
                        await response.read()
                        failed += response.status != 201
                except (aiohttp.ClientError, TimeoutError):
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return failed
