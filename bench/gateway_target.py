"""Target (f): `gateway serve` on a fresh embedded Valkey of its own, with everything a production operator turns
on: a catalog that rewrites the public version to the canned upstream's (a `replicate` provider with a token),
the version's input schema (validation and aliases), a tenant key, limits on that key (rates, concurrency, a
budget) and metering (a price)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import child
from bench.upstream import UPSTREAM_VERSION
from gateway.store.embedded import EmbeddedRedis
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL = "stability-ai/stable-diffusion-inpainting"
VERSION = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
ADMIN_TOKEN = "bench-admin-token-0123456789"
UPSTREAM_TOKEN = "r8_bench_upstream_token"
INLINE_PNG = "data:image/png;base64,iVBORw0KGgo="
# `steps` is an alias the catalog renames; the images are inline, so that no DNS is asked.
CREATE_BODY = {
    "version": f"{MODEL}:{VERSION}",
    "input": {"image": INLINE_PNG, "mask": INLINE_PNG, "prompt": "a cat", "steps": 25},
}
# Limits every create and read is checked against, set high enough never to refuse one.
KEY_LIMITS = {
    "creates_per_minute": 10_000_000,
    "reads_per_minute": 10_000_000,
    "concurrent_predictions": 10_000_000,
    "budget": {"amount": "1000000000", "period": "month"},
}
_CATALOG = f"""
[providers.canned]
kind = "replicate"
base_url = "{{upstream}}/v1"
token_env = ["BENCH_UPSTREAM_TOKEN"]
timeout = 30

[[models]]
name = "{MODEL}"
aliases = {{ steps = "num_inference_steps", cfg_scale = "guidance_scale" }}
price = {{ per_prediction = "0.0023", per_second = "0.000975" }}

[[models.versions]]
id = "{VERSION}"
schema = "{ROOT}/config/schemas/stable-diffusion-inpainting.json"
routes = [{{ provider = "canned", version = "{UPSTREAM_VERSION}" }}]
"""


@dataclass(frozen=True)
class RunningGateway:
    url: str
    pid: int
    redis_url: str
    token: str  # the tenant key, with limits

    @property
    def auth(self) -> str:
        return f"Bearer {self.token}"


def supports_workers() -> bool:
    """Whether this gateway's `serve` takes `--workers`."""
    help_text = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], capture_output=True, text=True).stdout
    return "--workers" in help_text


def canned_catalog(upstream: str) -> str:
    """The catalog of target (f): the inpainting model's version, rewritten to the canned upstream's."""
    return _CATALOG.replace("{upstream}", upstream)


@contextlib.contextmanager
def gateway(scratch: Path, catalog_text: str, log_level: str = "info", workers: int = 1) -> Iterator[RunningGateway]:
    """One `gateway serve` (with `workers` processes) serving `catalog_text`, on a Valkey of its own."""
    scratch.mkdir(parents=True, exist_ok=True)
    catalog = scratch / "catalog.toml"
    catalog.write_text(catalog_text)
    port = free_port()
    with EmbeddedRedis(scratch / "redis") as redis:
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")},
            "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_CATALOG": str(catalog),
            "GATEWAY_PORT": str(port),
            "GATEWAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",  # upstreams get a webhook address, as in production
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_DATA_DIR": str(scratch / "data"),
            "GATEWAY_LOG_LEVEL": log_level,
            # Each create schedules a follow-up a second later; an hour later here, so that the figures of a run
            # are the requests' own cost and not that of background polling (which the canned upstream ends at once).
            "GATEWAY_POLL_FIRST_SECONDS": "3600",
            "BENCH_UPSTREAM_TOKEN": UPSTREAM_TOKEN,
        }
        command = [sys.executable, "-m", "gateway", "serve", *(["--workers", str(workers)] if workers > 1 else [])]
        with child(command, scratch / f"gateway-{log_level}-{workers}.log", port, env=env, timeout=60) as pid:
            url = f"http://127.0.0.1:{port}"
            yield RunningGateway(url, pid, redis.url, _limited_key(url))


def _limited_key(url: str) -> str:
    with httpx.Client(base_url=f"{url}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as admin:
        created = admin.post("/keys", json={"tenant": "bench"})
        created.raise_for_status()
        admin.put(f"/keys/{created.json()['key']['key_id']}/limits", json=KEY_LIMITS).raise_for_status()
        return str(created.json()["token"])


def finished_prediction(running: RunningGateway) -> str:
    """The id of a prediction that has succeeded, so that reading it is served from Redis alone."""
    with httpx.Client(base_url=running.url, headers={"Authorization": running.auth}, timeout=30) as client:
        created = client.post("/v1/predictions", json=CREATE_BODY)
        created.raise_for_status()
        prediction = created.json()["id"]
        for _ in range(100):  # a read of a record older than the refresh interval asks the canned upstream
            if client.get(f"/v1/predictions/{prediction}").json()["status"] == "succeeded":
                return str(prediction)
            time.sleep(0.2)
    raise RuntimeError("the prediction did not succeed")
