"""Client webhook latency: from a prediction's terminal state to the receipt of its `completed` webhook.

Runs a receiver in this process and, beside it, one `gateway serve` process in front of the Replicate emulator
(`bench/emulated.py`), creates `--predictions` predictions (`--concurrency` at a time) with a
webhook, and reports p50/p99 of two spans: from the gateway applying the terminal state (its `created_at` +
`metrics.total_time`) to receipt, and from the upstream's `completed_at` (which adds the upstream's own
callback to the gateway) to receipt.

    python bench/webhook_latency.py [--predictions 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
from emulated import CREATE_BODY, gateway_on_emulator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.timestamps import parse_timestamp
from tests.servers import serve_in_thread


class Receiver:
    """Records (gateway terminal time, upstream completion time, arrival time) of each terminal webhook."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, float]] = []
        self._lock = threading.Lock()

    async def receive(self, request: Request) -> Response:
        arrived = time.time()
        body = orjson.loads(await request.body())
        applied = (parse_timestamp(body["created_at"]) or 0) + body["metrics"]["total_time"]
        with self._lock:
            self.spans.append((applied, parse_timestamp(body["completed_at"]) or 0, arrived))
        return Response(status_code=204)


def _percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    receiver = Receiver()
    hooks = Starlette(routes=[Route("/hook", receiver.receive, methods=["POST"])])
    settings = {"public_base_url": "self", "webhook_allowed_networks": "127.0.0.0/8"}
    with serve_in_thread(hooks) as receiver_url, gateway_on_emulator(**settings) as running:
        running.control("configure", start_delay=0.01, run_seconds=0.05)
        body = {**CREATE_BODY, "webhook": f"{receiver_url}/hook", "webhook_events_filter": ["completed"]}

        headers = {"Authorization": f"Bearer {running.token}"}

        def create(_: int) -> None:
            response = httpx.post(f"{running.gateway}/v1/predictions", json=body, headers=headers)
            assert response.status_code == 201, response.text

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(create, range(args.predictions)))
        deadline = time.monotonic() + 60
        while len(receiver.spans) < args.predictions and time.monotonic() < deadline:
            time.sleep(0.05)
    spans = receiver.spans
    print(f"{len(spans)}/{args.predictions} terminal webhooks received, {args.concurrency} creates in flight")
    print("gateway terminal state -> receipt:", _percentiles([arrived - applied for applied, _, arrived in spans]))
    print("upstream completed_at  -> receipt:", _percentiles([arrived - completed for _, completed, arrived in spans]))


if __name__ == "__main__":
    main()
