"""`gateway serve` with GATEWAY_LOG_FORMAT=json: every line of its output is one JSON object, the lines of a
request carry its id, key, tenant and prediction, and no credential appears anywhere in the output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, UPSTREAM_TOKEN, Upstream, gateway_process, inpainting_input
from tests.images import data_uri, mask_png, solid_png

# Inline files: a gateway process of its own resolves hosts with the system's resolver, and there is no DNS here.
INLINE_FILES = {"image": data_uri(solid_png(8, 8, (255, 255, 255))), "mask": data_uri(mask_png(8, 8, (2, 2, 6, 6)))}
TENANT = "json-logs"


def _create_and_follow(url: str, token: str) -> dict[str, Any]:
    """A create, GETs until it finished, then a fetch of its output link: each with a request id of its own."""
    with httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        body = {"version": INPAINTING_VERSION, "input": inpainting_input(**INLINE_FILES)}
        created = api.post("/predictions", json=body, headers={"X-Request-Id": "json-create"})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 15
        while (read := api.get(f"/predictions/{created.json()['id']}", headers={"X-Request-Id": "json-get"})).json()["status"] != "succeeded":  # fmt: skip
            assert time.monotonic() < deadline, read.text
            time.sleep(0.1)
    assert httpx.get(read.json()["output"][0], headers={"X-Request-Id": "json-output"}).status_code == 200
    return dict(read.json())


def _access_line(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """The last access log line of the requests with `request_id`."""
    return [line for line in lines if line.get("request_id") == request_id and line["logger"] == "gateway.access"][-1]


def test_json_logs_carry_the_requests_fields_and_no_secret(
    tmp_path: Path, redis_url: str, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    settings = {"log_format": "json", "log_level": "debug", "public_base_url": "self"}  # debug: upstream calls too
    with gateway_process(redis_url, catalog_path, tmp_path / "data", **settings) as (url, output, _):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        made = httpx.post(f"{url}/admin/v1/keys", json={"tenant": TENANT}, headers=admin).json()
        token, key_id = made["token"], made["key"]["key_id"]
        prediction = _create_and_follow(url, token)
    [create] = replicate_upstream.requests("POST", "/v1/predictions")
    callback_token = parse_qs(urlsplit(create.json["webhook"]).query)["token"][0]
    signature = urlsplit(prediction["output"][0]).path.split("/")[-2]  # …/outputs/<index>/<expiry>/<signature>/<name>

    text = "\n".join(output)
    for secret in (token.rsplit("_", 1)[-1], UPSTREAM_TOKEN, ADMIN_TOKEN, callback_token, signature):
        assert secret not in text
    assert "authorization" not in text.lower()
    lines = [json.loads(line) for line in output if line.strip()]  # fails on any line that is not JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    for request_id in ("json-create", "json-get"):
        mine = [line for line in lines if line.get("request_id") == request_id]
        assert all(line["key_id"] == key_id and line["tenant"] == TENANT for line in mine)
        access = _access_line(lines, request_id)
        assert access["prediction_id"] == prediction["id"] and access["provider"] == "replicate"
        assert access["duration_ms"] >= 0
    created, read = _access_line(lines, "json-create"), _access_line(lines, "json-get")
    assert (created["method"], created["path"], created["status"]) == ("POST", "/v1/predictions", 201)
    assert (read["method"], read["path_template"], read["status"]) == ("GET", "/v1/predictions/{prediction_id}", 200)
    assert (created["upstream_status"], read["path"]) == (201, f"/v1/predictions/{prediction['id']}")

    [upstream_create] = [
        line for line in lines if line.get("request_id") == "json-create" and line["logger"] == "gateway.upstream"
    ]
    assert (upstream_create["level"], upstream_create["provider"], upstream_create["operation"]) == (
        "debug",
        "replicate",
        "create",
    )
    assert upstream_create["upstream_status"] == 201 and upstream_create["upstream_latency_ms"] > 0
    callbacks = [line for line in lines if line.get("path_template") == "/webhooks/upstream/{prediction_id}"]
    assert callbacks and all(
        "token=[redacted]" in line["path"] and line["prediction_id"] == prediction["id"] for line in callbacks
    )
    fetched = _access_line(lines, "json-output")
    assert "[redacted]" in fetched["path"] and fetched["status"] == 200 and fetched["prediction_id"] == prediction["id"]
