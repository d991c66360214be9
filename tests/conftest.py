"""Real parts for the whole suite: a Valkey server, Replicate-protocol upstreams and gateways over HTTP."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.api.app import create_app
from gateway.catalog import Catalog
from gateway.config import Settings, load_catalog
from gateway.services import Services
from gateway.ssrf import IPAddress, system_resolve
from gateway.store.embedded import EmbeddedRedis
from tests.emulator import EmulatedModel, create_replicate_emulator
from tests.emulator.controls import EmulatorControls
from tests.servers import free_port, serve_in_thread
from tests.topologies import Topology, cluster

ROOT = Path(__file__).parents[1]
INPAINTING = "stability-ai/stable-diffusion-inpainting"
INPAINTING_VERSION = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
UPSTREAM_ONLY_VERSION = "ab" * 32  # a version whose schema the gateway must fetch from the upstream
UPSTREAM_TOKEN = "r8_upstream_secret_token"
ADMIN_TOKEN = "admin-secret-for-tests"
# Metered: a price of every kind, with more decimal places than a cent, so that rounding would show.
INPAINTING_PRICE = {"per_prediction": "0.0023", "per_second": "0.000975", "per_output": "0.0011"}
INPAINTING_SCHEMA = json.loads((ROOT / "config" / "schemas" / "stable-diffusion-inpainting.json").read_text())
SIMPLE_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}, "repeat": {"type": "integer", "minimum": 1, "maximum": 3}},
            },
            "Output": {"type": "string"},
        }
    },
}

STORY = "acme/story"  # a language model: streams its output, token by token
STORY_VERSION = "5e" * 32
STORY_MUTED_VERSION = "6f" * 32  # the same upstream version, with streaming turned off in the catalog
STORY_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {
        "schemas": {
            "Input": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            "Output": {
                "type": "array",
                "items": {"type": "string"},
                "x-cog-array-type": "iterator",
                "x-cog-array-display": "concatenate",
            },
        }
    },
}

TEST_CATALOG = f"""
[providers.replicate]
kind = "replicate"
base_url = "{{replicate}}/v1"
token_env = ["UPSTREAM_TOKEN"]
timeout = 3
hardware = [{{ sku = "gpu-t4", name = "Nvidia T4 GPU" }}]
training_destination_owner = "operator-account"

[providers.aggregator]
kind = "replicate"
base_url = "{{aggregator}}/replicate/v1"
token_env = ["UPSTREAM_TOKEN"]
timeout = 3
hardware = [{{ sku = "gpu-t4", name = "T4 (aggregator)" }}, {{ sku = "gpu-a100-large", name = "Nvidia A100 (80GB) GPU" }}]

[[models]]
name = "{INPAINTING}"
aliases = {{ steps = "num_inference_steps", cfg_scale = "guidance_scale", sampler_name = "scheduler" }}
price = {{ per_prediction = "{INPAINTING_PRICE['per_prediction']}", per_second = "{INPAINTING_PRICE['per_second']}", per_output = "{INPAINTING_PRICE['per_output']}" }}

[[models.versions]]
id = "{INPAINTING_VERSION}"
schema = "{ROOT}/config/schemas/stable-diffusion-inpainting.json"
trainable = true
routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]

[[models]]
name = "acme/echo"
description = "Echoes its text back"
tags = ["text", "utility"]
readme = "# Echo\\n\\nSays what it is told."
examples = [{{ input = {{ text = "hi", repeat = 2 }}, output = "hihi" }}]
defaults = {{ repeat = 1 }}

[[models.versions]]
id = "{UPSTREAM_ONLY_VERSION}"
routes = [{{ provider = "aggregator", model = "upstream-owner/echo" }}]

[[models]]
name = "{STORY}"
description = "Tells a story about the prompt, streaming it token by token"
tags = ["text", "language-model"]

[[models.versions]]
id = "{STORY_VERSION}"
routes = [{{ provider = "replicate", version = "{STORY_VERSION}" }}]

[[models.versions]]
id = "{STORY_MUTED_VERSION}"
stream = false
routes = [{{ provider = "replicate", version = "{STORY_VERSION}" }}]

[[deployments]]
name = "acme/inpaint-prod"
model = "{INPAINTING}"
routes = [{{ provider = "replicate", deployment = "stability-ai/inpaint-deploy" }}]

[[collections]]
slug = "text-models"
name = "Text models"
description = "Models that read and write text"
full_description = "# Text\\nEcho and story."
models = ["acme/echo", "{STORY}"]

[[collections]]
slug = "image-editing"
name = "Image editing"
description = "Inpainting"
models = ["{INPAINTING}"]

# Edits only: the fuzz test reaches finished edits; generations stay unserved (404).
[openai.images]
edits = "{INPAINTING}"
"""


_EXISTING_PREDICTION = re.compile(r"/predictions/[^/]+(/cancel)?$")
PUBLIC_ADDRESS = ipaddress.ip_address("93.184.215.14")  # what the suite's example hosts resolve to, without DNS


async def resolve_examples(host: str) -> list[IPAddress]:
    """The suite's resolver for input URLs: example.com names are public (no DNS here), others as the system says."""
    if host == "example.com" or host.endswith((".example.com", ".example")):
        return [PUBLIC_ADDRESS]
    return await system_resolve(host)


@dataclass
class Upstream:
    url: str
    controls: EmulatorControls

    def requests(self, method: str, path_suffix: str) -> list[Any]:
        return [r for r in self.controls.requests() if r.method == method and r.path.endswith(path_suffix)]

    def asked_to_start_work(self) -> list[Any]:
        """Requests other than reads and cancels of existing predictions, which the gateways' background work
        (follow-ups, deadlines) sends at any time, also for predictions of earlier tests."""
        return [r for r in self.controls.requests() if not _EXISTING_PREDICTION.search(r.path)]


@dataclass
class Gateway:
    url: str
    settings: Settings
    catalog: Catalog
    app: Starlette
    admin: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.Client(base_url=f"{self.url}/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)

    def new_key(self, tenant: str | None = None, **fields: Any) -> tuple[str, dict[str, Any]]:
        """A fresh key for a fresh (or given) tenant: (token, public record)."""
        response = self.admin.post("/keys", json={"tenant": tenant or f"t-{uuid.uuid4().hex[:10]}", **fields})
        assert response.status_code == 201, response.text
        return response.json()["token"], response.json()["key"]

    def client(self, token: str, prefix: str = "/v1") -> httpx.Client:
        return httpx.Client(base_url=self.url + prefix, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    @property
    def services(self) -> Services:
        return self.app.state.services  # type: ignore[no-any-return]


@contextlib.contextmanager
def run_gateway(
    settings: Settings, environ: dict[str, str] | None = None, kind: type[Gateway] = Gateway, **extra: Any
) -> Iterator[Gateway]:
    """A gateway app for `settings` served on 127.0.0.1:`settings.port` until the block exits."""
    catalog = Catalog(load_catalog(settings.catalog, {"UPSTREAM_TOKEN": UPSTREAM_TOKEN} if environ is None else environ))
    app = create_app(settings, catalog, resolve_examples)
    with serve_in_thread(app, settings.port) as url:
        gateway = kind(url, settings, catalog, app, **extra)
        try:
            yield gateway
        finally:
            gateway.admin.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A real 3-primary Valkey Cluster, shared by the tests that run on a cluster."""
    with cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def _emulator(prefix: str) -> Iterator[Upstream]:
    models = [
        EmulatedModel(owner="stability-ai", name="stable-diffusion-inpainting", versions={INPAINTING_VERSION: INPAINTING_SCHEMA}),
        EmulatedModel(
            owner="stability-ai",
            name="inpaint-deploy-model",
            versions={"cd" * 32: INPAINTING_SCHEMA},
            deployments=["stability-ai/inpaint-deploy"],
        ),
        EmulatedModel(owner="upstream-owner", name="echo", versions={"ef" * 32: SIMPLE_SCHEMA}),
        EmulatedModel(owner="acme", name="story", versions={STORY_VERSION: STORY_SCHEMA}),
    ]
    app = create_replicate_emulator(tokens=[UPSTREAM_TOKEN], models=models, prefix=prefix)
    with serve_in_thread(app) as url:
        yield Upstream(url, app.state.emulator)


@pytest.fixture(scope="session")
def replicate_upstream() -> Iterator[Upstream]:
    yield from _emulator("/v1")


@pytest.fixture(scope="session")
def aggregator_upstream() -> Iterator[Upstream]:
    yield from _emulator("/replicate/v1")


@pytest.fixture(autouse=True)
def _fresh_upstreams(request: pytest.FixtureRequest) -> None:
    for name in ("replicate_upstream", "aggregator_upstream"):
        if name in request.fixturenames:
            request.getfixturevalue(name).controls.reset()


@pytest.fixture(scope="session")
def catalog_path(tmp_path_factory: pytest.TempPathFactory, replicate_upstream: Upstream, aggregator_upstream: Upstream) -> Path:
    path = tmp_path_factory.mktemp("config") / "catalog.toml"
    path.write_text(TEST_CATALOG.replace("{replicate}", replicate_upstream.url).replace("{aggregator}", aggregator_upstream.url))
    return path


def gateway_settings(redis_url: str, catalog_path: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "catalog": catalog_path,
        "port": port,
        "admin_token": ADMIN_TOKEN,
        "public_base_url": f"http://127.0.0.1:{port}",
        "refresh_after_seconds": 0.1,
        "max_body_bytes": 256 * 1024,
        "allow_private_input_urls": False,
        # Gateways on the suite's shared Redis share circuit breakers by route: one test's injected failures must
        # not open a route for the tests after it. The breaker tests set their own, on a Redis of their own.
        "breaker_failures": 1_000_000,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def gateway(redis_url: str, catalog_path: Path) -> Iterator[Gateway]:
    with run_gateway(gateway_settings(redis_url, catalog_path, free_port(), files_dir=catalog_path.parent / "files")) as running:
        yield running


@pytest.fixture
def tenant_key(gateway: Gateway) -> str:
    return gateway.new_key()[0]


@pytest.fixture
def api(gateway: Gateway, tenant_key: str) -> Iterator[httpx.Client]:
    with gateway.client(tenant_key) as client:
        yield client


def inpainting_input(**extra: Any) -> dict[str, Any]:
    return {"image": "https://example.com/image.png", "mask": "https://example.com/mask.png", "prompt": "a cat", **extra}


@contextlib.contextmanager
def gateway_process(
    redis_url: str, catalog_path: Path, data_dir: Path, ready_seconds: float = 20, **settings: str
) -> Iterator[tuple[str, list[str], subprocess.Popen[bytes]]]:
    """`gateway serve` as a process of its own on the suite's Redis and catalog, with `GATEWAY_<NAME>` settings
    (`public_base_url="self"` names its own address), answering within `ready_seconds`; yields its URL, its output
    lines once it has stopped (empty until then), and the process (a test may kill it)."""
    port = free_port()
    if settings.get("public_base_url") == "self":
        settings["public_base_url"] = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_CATALOG": str(catalog_path),
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_DATA_DIR": str(data_dir),
        "UPSTREAM_TOKEN": UPSTREAM_TOKEN,
        "GATEWAY_BREAKER_FAILURES": "1000000",  # as in `gateway_settings`
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    }
    command = [sys.executable, "-m", "gateway", "serve"]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "gateway-output.log"  # a file, not a pipe: a busy gateway never blocks on a full pipe
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url, output = f"http://127.0.0.1:{port}", []
    deadline = time.monotonic() + ready_seconds
    try:
        while not _answers(f"{url}/health"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield url, output, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
        output += log.read_text(errors="replace").splitlines()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def gateway_on_own_redis(tmp_path: Path, catalog_path: Path, **overrides: Any) -> Iterator[tuple[EmbeddedRedis, Gateway]]:
    """A gateway on a Valkey of its own, for tests that stop and start the server (same port and data directory)."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        settings = gateway_settings(server.url, catalog_path, free_port(), files_dir=tmp_path / "files", **overrides)
        with run_gateway(settings) as gateway:
            yield server, gateway
    finally:
        server.stop()


NODE_PACKAGES = ROOT / "tests" / "js"


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """`tests/js`, its pinned packages (the official JS client, Replicate's Stainless client and MCP server)
    installed from the lock file when CI (`.ci/run`) has not done it already."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    wanted = ("replicate", "replicate-stainless", "replicate-mcp", "@modelcontextprotocol/sdk")
    if not all((NODE_PACKAGES / "node_modules" / package / "package.json").exists() for package in wanted):
        subprocess.run(["npm", "ci", "--prefix", str(NODE_PACKAGES), "--no-audit", "--no-fund"], check=True, timeout=300)
    return NODE_PACKAGES
