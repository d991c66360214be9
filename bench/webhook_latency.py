"""Client webhook latency: from a prediction's terminal state to the receipt of its `completed` webhook.

Runs a bundled Valkey, the Replicate emulator (tests/emulator) and a receiver in this process and one
`gateway serve` process beside them, creates `--predictions` predictions (`--concurrency` at a time) with a
webhook, and reports p50/p99 of two spans: from the gateway applying the terminal state (its `created_at` +
`metrics.total_time`) to receipt, and from the upstream's `completed_at` (which adds the upstream's own
callback to the gateway) to receipt.

    python bench/webhook_latency.py [--predictions 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.store.embedded import EmbeddedRedis  # noqa: E402
from gateway.timestamps import parse_timestamp  # noqa: E402
from tests.conftest import (  # noqa: E402
    ADMIN_TOKEN,
    INPAINTING_SCHEMA,
    INPAINTING_VERSION,
    TEST_CATALOG,
    UPSTREAM_TOKEN,
    inpainting_input,
)
from tests.emulator import EmulatedModel, create_replicate_emulator  # noqa: E402
from tests.servers import free_port, serve_in_thread  # noqa: E402


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


@contextlib.contextmanager
def _gateway(redis_url: str, catalog: Path, scratch: Path) -> Iterator[str]:
    """`gateway serve` in a process of its own, its output in a file; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_CATALOG": str(catalog),
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_DATA_DIR": str(scratch / "data"),
        "GATEWAY_PUBLIC_BASE_URL": url,
        "GATEWAY_ALLOWED_PRIVATE_CIDRS": "127.0.0.0/8",
        "GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "UPSTREAM_TOKEN": UPSTREAM_TOKEN,
    }
    with open(scratch / "gateway.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not _answers(f"{url}/health"):
                assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    receiver = Receiver()
    model = EmulatedModel("stability-ai", "stable-diffusion-inpainting", {INPAINTING_VERSION: INPAINTING_SCHEMA})
    emulator = create_replicate_emulator(tokens=[UPSTREAM_TOKEN], models=[model], prefix="/v1")
    emulator.state.emulator.configure(start_delay=0.01, run_seconds=0.05)
    hooks = Starlette(routes=[Route("/hook", receiver.receive, methods=["POST"])])
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis") as redis,
        serve_in_thread(emulator) as upstream,
        serve_in_thread(hooks) as receiver_url,
    ):
        catalog = Path(scratch) / "catalog.toml"
        catalog.write_text(
            TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream).replace("timeout = 3", "timeout = 30")
        )
        with _gateway(redis.url, catalog, Path(scratch)) as gateway:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{gateway}/admin/v1/keys", json={"tenant": "bench"}, headers=admin).json()["token"]
            body = {
                "version": INPAINTING_VERSION,
                "input": inpainting_input(image="http://127.0.0.1:9/image.png", mask="http://127.0.0.1:9/mask.png"),
                "webhook": f"{receiver_url}/hook",
                "webhook_events_filter": ["completed"],
            }

            def create(_: int) -> None:
                response = httpx.post(f"{gateway}/v1/predictions", json=body, headers={"Authorization": f"Bearer {token}"})
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
