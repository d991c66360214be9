"""The webhook signing secret endpoint, and webhook URLs refused at create time."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import INPAINTING_VERSION, ROOT, Gateway, Upstream, inpainting_input

SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")  # 32 bytes in padded standard base64: no "_" or "-"
JS_CLIENT = ROOT / "tests" / "js"


def test_each_tenant_has_one_secret_on_both_prefixes(gateway: Gateway) -> None:
    token, _ = gateway.new_key()
    other, _ = gateway.new_key()
    secrets = []
    for key, prefix in ((token, "/v1"), (token, "/replicate/v1"), (token, "/v1"), (other, "/v1")):
        with gateway.client(key, prefix) as api:
            response = api.get("/webhooks/default/secret")
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert list(response.json()) == ["key"] and SECRET.match(response.json()["key"])
        secrets.append(response.json()["key"])
    assert secrets[0] == secrets[1] == secrets[2] != secrets[3]


def test_the_secret_needs_the_tenants_key(gateway: Gateway) -> None:
    for headers in ({}, {"Authorization": "Bearer gwk_nope_nope"}):
        response = httpx.get(f"{gateway.url}/v1/webhooks/default/secret", headers=headers)
        assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
        assert "whsec_" not in response.text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_js_client_reads_the_secret(gateway: Gateway, tenant_key: str) -> None:
    assert (JS_CLIENT / "node_modules" / "replicate").is_dir(), "run `npm ci --prefix tests/js` first"
    result = subprocess.run(
        ["node", str(JS_CLIENT / "webhook_secret.mjs")],
        env={**os.environ, "GATEWAY_URL": f"{gateway.url}/v1", "GATEWAY_KEY": tenant_key},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(JS_CLIENT),
    )
    assert result.returncode == 0, result.stderr
    with gateway.client(tenant_key) as api:
        assert json.loads(result.stdout) == api.get("/webhooks/default/secret").json()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "https://localhost/hook",
        "http://10.0.0.7/hook",
        "http://100.64.0.1/hook",
        "http://2130706433/hook",
    ],
)
def test_a_webhook_to_a_private_address_is_refused_at_create(api: httpx.Client, replicate_upstream: Upstream, url: str) -> None:
    for field in ("webhook", "webhook_completed"):
        response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(), field: url})
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        assert response.json()["invalid_fields"] == [
            {"type": "unsafe_url", "field": "webhook", "description": "URLs on private or loopback addresses are not accepted"}
        ]
    assert replicate_upstream.requests("POST", "/predictions") == []


def test_a_webhook_on_a_public_host_is_accepted(api: httpx.Client) -> None:
    webhook = {"webhook": "https://hooks.example.com/x", "webhook_events_filter": ["start"]}
    response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(), **webhook})
    assert response.status_code == 201
    assert response.json()["webhook"] == "https://hooks.example.com/x"
