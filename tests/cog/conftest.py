"""A gateway in front of real Cog servers of the demo model, which it starts and supervises itself."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import ROOT, Gateway, gateway_settings, run_gateway
from tests.servers import free_port
from tests.tls_proxy import tls_proxy

FAST_VERSION = "1a" * 32
SLOW_VERSION = "2b" * 32
SLOW_SECONDS = 2
TYPEWRITER_VERSION = "3c" * 32


def _free_block(count: int) -> int:
    """A base port with `count` free consecutive ports after it."""
    for _ in range(50):
        base = free_port()
        if base + count < 65000 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _catalog(fast_port: int, slow_port: int, typewriter_port: int) -> str:
    model_dir = ROOT / "models" / "inpaint"
    return f"""
[providers.cog-typewriter]
kind = "cog"
managed = {{ model_dir = "{ROOT / "models" / "typewriter"}", count = 1, base_port = {typewriter_port} }}
timeout = 5

[[models]]
name = "test/typewriter"

[[models.versions]]
id = "{TYPEWRITER_VERSION}"
routes = [{{ provider = "cog-typewriter" }}]

[providers.cog-fast]
kind = "cog"
managed = {{ model_dir = "{model_dir}", count = 2, base_port = {fast_port} }}
timeout = 5

[providers.cog-slow]
kind = "cog"
managed = {{ model_dir = "{model_dir}", count = 2, base_port = {slow_port}, env = {{ INPAINT_DELAY_SECONDS = "{SLOW_SECONDS}" }} }}
timeout = 5

[[models]]
name = "test/inpaint"
aliases = {{ steps = "num_inference_steps", cfg_scale = "guidance_scale", sampler_name = "scheduler" }}

[[models.versions]]
id = "{FAST_VERSION}"
routes = [{{ provider = "cog-fast" }}]

[[models]]
name = "test/inpaint-slow"

[[models.versions]]
id = "{SLOW_VERSION}"
routes = [{{ provider = "cog-slow" }}]
"""


@dataclass
class CogGateway(Gateway):
    """The gateway over plain HTTP (what the model servers call) plus its public https address."""

    public_url: str = ""
    ca: trustme.CA | None = None

    def client_ssl_context(self) -> ssl.SSLContext:
        assert self.ca is not None
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="module")
def cog_gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogGateway]:
    base = _free_block(5)
    fast, slow, typewriter = base, base + 2, base + 4
    path: Path = tmp_path_factory.mktemp("cog") / "catalog.toml"
    path.write_text(_catalog(fast, slow, typewriter))
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    port = free_port()
    while base <= port < base + 5:
        port = free_port()
    with tls_proxy(port, server_context) as public_url:
        settings = gateway_settings(
            redis_url,
            path,
            port,
            public_base_url=public_url,
            files_dir=tmp_path_factory.mktemp("files"),
            refresh_after_seconds=0.5,
        )
        with run_gateway(settings, {}, CogGateway, public_url=public_url, ca=ca) as running:
            yield running  # type: ignore[misc]
