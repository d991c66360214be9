"""A process hammering one flapping route through its own `Breakers`; prints what happened as JSON lines.

`python -m tests.routing.flapper REDIS_URL ROUTE START HEALTHY_AT END`: from START (epoch seconds) to END,
WORKERS concurrent loops admit a request on ROUTE, spend REQUEST_SECONDS on it, and report a failure before
HEALTHY_AT, a success after. Lines: `transition` (made by this process), `probe` (claimed and answered:
`start`, `end`, `ok`), then `final` (this process's view of the breaker, after a pause for announcements).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis.asyncio as aioredis

from gateway.routing import Breakers, Ticket
from gateway.store import BreakerPolicy, BreakerStore

POLICY = BreakerPolicy(failures=5, window_ms=1000, open_ms=400, probe_ms=5000)
WORKERS = 8
REQUEST_SECONDS = 0.03


def emit(**line: object) -> None:
    print(json.dumps(line), flush=True)


async def work(breakers: Breakers, route: str, healthy_at: float, end: float) -> None:
    while time.time() < end:
        ticket = await breakers.admit(route)
        if ticket is None:
            await asyncio.sleep(0.005)
            continue
        await request(breakers, ticket, healthy_at)


async def request(breakers: Breakers, ticket: Ticket, healthy_at: float) -> None:
    start = time.time()
    await asyncio.sleep(REQUEST_SECONDS)
    ok = time.time() >= healthy_at
    if ticket.probe:
        emit(kind="probe", start=start, end=time.time(), ok=ok)
    if ok:
        await breakers.succeeded(ticket)
    else:
        await breakers.failed(ticket, "http_503")


async def main(url: str, route: str, healthy_after: float, end_after: float) -> None:
    """Say `ready` once subscribed, then run from the start time the parent sends on stdin (so that slow imports
    on a busy machine cannot eat into the failing period)."""
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    breakers = Breakers(BreakerStore(redis), POLICY, lambda _, state: emit(kind="transition", state=state, at=time.time()))
    await breakers.start()
    await asyncio.sleep(0.5)  # the subscription is up: announcements from the other process reach this one
    emit(kind="ready")
    start = float(await asyncio.to_thread(sys.stdin.readline))
    healthy_at, end = start + healthy_after, start + end_after
    await asyncio.sleep(start - time.time())
    await asyncio.gather(*(work(breakers, route, healthy_at, end) for _ in range(WORKERS)))
    await asyncio.sleep(0.3)
    emit(kind="final", state=breakers.local_state(route).value)
    await breakers.aclose()
    await redis.aclose()


if __name__ == "__main__":
    url, route, healthy_after, end_after = sys.argv[1:]
    asyncio.run(main(url, route, float(healthy_after), float(end_after)))
