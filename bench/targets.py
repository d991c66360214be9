"""Every target of a run, started one at a time against the canned upstream: what to send it for a create and
a read, and which process (and Redis) to watch."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import gateway_target, litellm_target
from bench.gateway_target import CREATE_BODY, UPSTREAM_TOKEN
from bench.load import Request
from bench.processes import child
from bench.upstream import reverse_proxy
from tests.servers import free_port

_ANY_ID = "q2mhm8etrdrj20ckfg7rv3c5e0"  # the canned upstream answers every id


@dataclass(frozen=True)
class Endpoint:
    key: str  # a key of table.TARGETS
    root: str
    pid: int  # the process (tree) to watch
    authorization: str
    read_id: str = _ANY_ID
    redis_url: str | None = None

    def create(self, *headers: tuple[str, str]) -> Request:
        return Request("POST", f"{self.root}/v1/predictions", self.authorization, CREATE_BODY, headers)

    def read(self) -> Request:
        return Request("GET", f"{self.root}/v1/predictions/{self.read_id}", self.authorization)


@contextlib.contextmanager
def start(key: str, scratch: Path, upstream: tuple[str, int]) -> Iterator[Endpoint]:
    """Target `key` until the block exits (the canned upstream `upstream`, root URL and pid, is already up)."""
    root, pid = upstream
    upstream_auth = f"Bearer {UPSTREAM_TOKEN}"
    if key == "a":
        yield Endpoint(key, root, pid, upstream_auth)
    elif key == "b":
        with reverse_proxy(scratch, root) as (url, proxy):
            yield Endpoint(key, url, proxy, upstream_auth)
    elif key in ("c", "d"):
        with _passthrough("aiohttp" if key == "c" else "httpx", scratch, root) as (url, server):
            yield Endpoint(key, url, server, upstream_auth)
    elif key == "e":
        with litellm_target.litellm(scratch / "litellm", root) as (url, proxy):
            yield Endpoint(key, url, proxy, f"Bearer {litellm_target.MASTER_KEY}")
    else:
        level, workers = {"f": ("info", 1), "f-warning": ("warning", 1), "f-workers2": ("info", 2)}[key]
        catalog = gateway_target.canned_catalog(root)
        with gateway_target.gateway(scratch / key, catalog, level, workers) as running:
            finished = gateway_target.finished_prediction(running)
            yield Endpoint(key, running.url, running.pid, running.auth, finished, running.redis_url)


@contextlib.contextmanager
def _passthrough(client: str, scratch: Path, upstream: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "bench.passthrough", client, upstream, str(port)]
    with child(command, scratch / f"passthrough-{client}.log", port) as pid:
        yield f"http://127.0.0.1:{port}", pid
