"""The gateway in front of the Replicate emulator (tests/emulator, in a process of its own, so that the clients'
load does not slow the upstream down), each on a fresh Valkey: for the scenarios whose upstream must take time
(a model that runs a second, predictions that outlast many waits, webhooks on completion)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, TEST_CATALOG, gateway_process
from tests.emulator.process import emulator_process


@dataclass(frozen=True)
class Running:
    gateway: str  # the gateway's root URL
    upstream: str  # the emulator's root URL (its API under /v1, its controls under /v1/_emulator)
    redis_url: str
    pid: int  # the gateway process
    token: str  # a tenant key

    @property
    def auth(self) -> str:
        return f"Bearer {self.token}"

    def control(self, action: str, **body: object) -> None:
        """Drive the emulator: `configure`, `drop_webhooks`, `faults`, `reset` (see tests/emulator/controls.py)."""
        httpx.post(f"{self.upstream}/v1/_emulator/{action}", json=body).raise_for_status()

    def upstream_requests(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.upstream}/v1/_emulator/requests", timeout=60).json())


@contextlib.contextmanager
def gateway_on_emulator(**settings: str) -> Iterator[Running]:
    """A Valkey, the emulator and one gateway process with `GATEWAY_*` settings (`public_base_url="self"` gives it
    its own address, so that the emulator's webhooks reach it), and a tenant key."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedRedis(Path(scratch) / "redis") as redis,
        emulator_process() as upstream,
    ):
        catalog = Path(scratch) / "catalog.toml"
        text = TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream)
        catalog.write_text(text.replace("timeout = 3\n", "timeout = 30\n"))
        with gateway_process(redis.url, catalog, Path(scratch) / "gateway", **settings) as (url, _, process):
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "bench"}, headers=admin).json()["token"]
            yield Running(url, upstream, redis.url, process.pid, token)
