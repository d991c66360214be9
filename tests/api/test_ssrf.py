"""The address policy over HTTP: URLs in inputs of any version, and output files an upstream points at."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import INPAINTING_VERSION, Gateway, Upstream, gateway_settings, inpainting_input, run_gateway
from tests.servers import free_port

SCHEMALESS_VERSION = "12" * 32
REFUSED = "URLs on private or loopback addresses are not accepted"


@pytest.fixture(scope="module")
def schemaless_gateway(
    redis_url: str, replicate_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose only version has no schema anywhere (a deployment route: none is fetched)."""
    catalog = tmp_path_factory.mktemp("schemaless") / "catalog.toml"
    catalog.write_text(
        f'[providers.replicate]\nkind = "replicate"\nbase_url = "{replicate_upstream.url}/v1"\n'
        'token_env = ["UPSTREAM_TOKEN"]\n\n[[models]]\nname = "acme/anything"\n\n[[models.versions]]\n'
        f'id = "{SCHEMALESS_VERSION}"\nroutes = [{{ provider = "replicate", deployment = "stability-ai/inpaint-deploy" }}]\n'
    )
    with run_gateway(gateway_settings(redis_url, Path(catalog), free_port())) as gateway:
        yield gateway


@pytest.mark.parametrize("url", ["http://2130706433/x.png", "http://0x7f000001/x.png", "http:/127.0.0.1/x.png"])
def test_a_private_url_in_an_undeclared_field_of_a_schemaless_version_is_refused(
    schemaless_gateway: Gateway, replicate_upstream: Upstream, url: str
) -> None:
    with schemaless_gateway.client(schemaless_gateway.new_key()[0]) as api:
        response = api.post("/predictions", json={"version": SCHEMALESS_VERSION, "input": {**inpainting_input(), "extra": [url]}})
    assert response.status_code == 422
    [field] = response.json()["invalid_fields"]
    assert field["type"] == "unsafe_file" and field["field"] == "input.extra"
    assert replicate_upstream.requests("POST", "/predictions") == []


def test_a_private_url_nested_in_a_declared_field_is_refused(api: httpx.Client, replicate_upstream: Upstream) -> None:
    response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(prompt="http://127.1/")})
    assert response.status_code == 422
    assert response.json()["invalid_fields"] == [{"type": "unsafe_file", "field": "input.prompt", "description": REFUSED}]
    assert replicate_upstream.requests("POST", "/predictions") == []


def _finished(api: httpx.Client, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.get(f"/predictions/{prediction_id}").json()
        if body["status"] == "succeeded":
            return body
        time.sleep(0.05)
    raise AssertionError(f"prediction {prediction_id} did not succeed")


def test_an_output_link_to_an_internal_address_is_not_fetched(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    internal = [
        f"http://127.0.0.1:{port}/metrics",
        f"http://localhost:{port}/metrics",
        f"http://[::ffff:127.0.0.1]:{port}/metrics",
    ]
    replicate_upstream.controls.configure(outputs=internal)
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    links = _finished(api, created["id"])["output"]
    assert len(links) == len(internal)
    for link in links:
        response = httpx.get(link)
        assert (response.status_code, response.json()["detail"]) == (502, "The output file's address is not allowed")
