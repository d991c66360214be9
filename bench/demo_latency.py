"""Demo-model latency: one prediction through the gateway versus straight to a Cog server.

Both run the same model directory on this machine in one run, interleaved, and the report gives ratios
(absolute numbers drift with the machine). Through the gateway a client creates the prediction and polls it
(the gateway queues it, dispatches it to its managed server, stores the output file and serves the record
from Redis); directly, the client makes one synchronous call to the server and gets a data URI back.

    python -m bench.demo_latency [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.providers.cog import CogAdapter, CogServerPool
from gateway.providers.http import UpstreamClient
from tests.images import data_uri, mask_png, png_with_square
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]

DEMO = "gateway-demo/opencv-inpainting:cafdb228d32cab35a6b4eb9fea9814ab09b3ef4959d9359bdfce4105d1d23198"
POLL_SECONDS = 0.005


def _input(size: int) -> dict[str, str]:
    box = (size // 3, size // 3, 2 * size // 3, 2 * size // 3)
    image = png_with_square(size, size, (255, 128, 0), (255, 255, 255), box)
    return {"image": data_uri(image), "mask": data_uri(mask_png(size, size, box))}


def _direct(server: str, payload: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(50):  # coglet answers 409 for a moment after each run: retry like any client must
            response = httpx.post(f"{server}/predictions", json={"input": payload}, timeout=60)
            if response.status_code != 409:
                break
        assert response.json()["status"] == "succeeded", response.text

    return run


def _through_gateway(client: httpx.Client, payload: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        version = DEMO.split(":")[1]
        created = client.post("/v1/predictions", json={"version": version, "input": payload}).json()
        while created["status"] not in ("succeeded", "failed", "canceled"):
            time.sleep(POLL_SECONDS)
            created = client.get(f"/v1/predictions/{created['id']}").json()
        assert created["status"] == "succeeded", created

    return run


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _start_gateway(data_dir: Path, port: int, cog_port: int) -> subprocess.Popen[bytes]:
    catalog = data_dir / "catalog.toml"
    text = (ROOT / "config" / "catalog.toml").read_text().replace('"../models/', f'"{ROOT / "models"}/')
    text = text.replace('schema = "schemas/', f'schema = "{ROOT / "config" / "schemas"}/')
    catalog.write_text(text.replace("base_port = 5100", f"base_port = {cog_port}"))
    env = {**os.environ, "GATEWAY_CATALOG": str(catalog), "GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--model-servers", "1"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _measure(gateway_port: int, direct_port: int, token: str, runs: int) -> None:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{gateway_port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        print(f"{'image':>8} {'direct p50':>11} {'gateway p50':>12} {'ratio':>6} {'direct p90':>11} {'gateway p90':>12}")
        for size in (64, 512):
            payload = _input(size)
            direct, through = _direct(f"http://127.0.0.1:{direct_port}", payload), _through_gateway(client, payload)
            direct(), through()  # warm up both paths
            times: dict[str, list[float]] = {"direct": [], "gateway": []}
            for _ in range(runs):
                times["direct"].append(_timed(direct))
                times["gateway"].append(_timed(through))
            _report(size, times)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port, direct_port = Path(tmp), free_port(), free_port()
        adapter = CogAdapter(UpstreamClient(2.0, 4), {})
        pool = CogServerPool(
            ROOT / "models" / "inpaint", [f"http://127.0.0.1:{direct_port}"], adapter.health, log_dir=data_dir / "logs"
        )
        await pool.start()
        gateway = _start_gateway(data_dir, port, free_port())
        try:
            await asyncio.to_thread(_wait, f"http://127.0.0.1:{port}/health")
            token = (data_dir / "demo_key").read_text().strip()
            await asyncio.to_thread(_measure, port, direct_port, token, runs)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
            await pool.stop()
            await adapter.aclose()


def _report(size: int, times: dict[str, list[float]]) -> None:
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in times.items()}
    ratio = p50["gateway"] / p50["direct"]
    p50s = f"{p50['direct']:>9.1f}ms {p50['gateway']:>10.1f}ms {ratio:>5.2f}x"
    print(f"{size:>6}px {p50s} {p90['direct']:>9.1f}ms {p90['gateway']:>10.1f}ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
