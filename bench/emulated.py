"""What the benchmarks share: a gateway process in front of the Replicate emulator (in a process of its own, so
that the clients' load does not slow the upstream down), each on a fresh Valkey, and readings of a process's
memory and CPU time from /proc."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.store.embedded import EmbeddedRedis  # noqa: E402
from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, TEST_CATALOG, gateway_process, inpainting_input  # noqa: E402
from tests.emulator.process import emulator_process  # noqa: E402

INLINE_PNG = "data:image/png;base64,iVBORw0KGgo="
# A create body that needs no DNS: the gateway process resolves names with the system's resolver.
CREATE_BODY = {"version": INPAINTING_VERSION, "input": inpainting_input(image=INLINE_PNG, mask=INLINE_PNG)}


@dataclass(frozen=True)
class Running:
    gateway: str  # the gateway's root URL
    upstream: str  # the emulator's root URL (its API under /v1, its controls under /v1/_emulator)
    redis_url: str
    pid: int  # the gateway process
    token: str  # a tenant key

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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
