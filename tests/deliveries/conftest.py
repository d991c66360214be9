"""A real webhook receiver on 127.0.0.1, and gateways on a Valkey of their own that may call it.

The deliveries of one Redis are shared by every gateway process on it, so webhook tests run on their own
server: the suite's other gateways (which may not call 127.0.0.1) never pick their messages up."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import Gateway, gateway_settings, run_gateway
from tests.servers import free_port, serve_in_thread

TERMINAL = ("succeeded", "failed", "canceled")
# Quick retries and takeovers, so that the schedules below play out within seconds.
FIRST_RETRY_SECONDS = 0.3
RETRY_SECONDS = 4.0
LEASE_SECONDS = 1.5


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]

    @property
    def terminal(self) -> bool:
        return self.json["status"] in TERMINAL


@dataclass
class Hook:
    """One webhook URL on the receiver: what arrived there, and how it answers."""

    url: str
    received: list[Received] = field(default_factory=list)
    failures: int = 0  # answer 500 to this many requests first
    failing: bool = False  # answer 503 until set back to False
    delay: float = 0.0  # seconds before answering

    def until(self, condition: Callable[[list[Received]], bool], seconds: float = 10) -> list[Received]:
        deadline = time.monotonic() + seconds
        while not condition(list(self.received)):
            assert time.monotonic() < deadline, f"not received in {seconds}s: {[r.json['status'] for r in self.received]}"
            time.sleep(0.02)
        return list(self.received)

    def terminal(self, seconds: float = 10) -> list[Received]:
        """Everything received once a terminal webhook was answered 2xx."""
        return self.until(lambda got: any(r.terminal and r.answered < 300 for r in got), seconds)


class Receiver:
    def __init__(self) -> None:
        self._hooks: dict[str, Hook] = {}
        self._lock = threading.Lock()
        self.url = ""

    def hook(self, **behaviour: Any) -> Hook:
        path = f"/hook/{uuid.uuid4().hex}"
        hook = Hook(f"{self.url}{path}?source=test", **behaviour)
        with self._lock:
            self._hooks[path] = hook
        return hook

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        hook = self._hooks[request.url.path]
        await asyncio.sleep(hook.delay)
        with self._lock:
            status = 500 if hook.failures else 503 if hook.failing else 204
            hook.failures = max(hook.failures - 1, 0)
            hook.received.append(Received(dict(request.headers), body, time.time(), status))
        return Response(status_code=status)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook/{name}", receiver.receive, methods=["POST"])])
    with serve_in_thread(app) as url:
        receiver.url = url
        yield receiver


@pytest.fixture(scope="module")
def webhook_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("webhook-redis")) as server:
        yield server.url


def webhook_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "webhook_allowed_networks": "127.0.0.0/8",
        "webhook_first_retry_seconds": FIRST_RETRY_SECONDS,
        "webhook_retry_seconds": RETRY_SECONDS,
        "webhook_lease_seconds": LEASE_SECONDS,
        **overrides,
    }


@pytest.fixture(scope="module")
def hooked(webhook_redis: str, catalog_path: Path) -> Iterator[Gateway]:
    """A gateway that may send webhooks to this machine (127.0.0.0/8 allowed)."""
    settings = gateway_settings(webhook_redis, catalog_path, free_port(), **webhook_settings())
    with run_gateway(settings) as gateway:
        yield gateway
