"""Input found by probing that once answered 500 (or worse): every one is now a clear 4xx problem, and the
tenant's other requests keep working."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, Gateway, inpainting_input


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _post(api: httpx.Client, raw: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.post("/predictions", content=raw, headers={"Content-Type": "application/json", **(headers or {})})


def test_json_nested_too_deeply_is_a_400(api: httpx.Client) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    body = f'{{"version": "{INPAINTING_VERSION}", "input": {{"prompt": {deep}}}}}'
    assert "depth limit exceeded" in _problem(_post(api, body), 400)["detail"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_are_refused_before_anything_runs(api: httpx.Client, constant: str) -> None:
    before = api.get("/predictions").json()["results"]
    body = '{"version": "%s", "input": {"image": "https://example.com/a.png", "mask": "https://example.com/m.png", "guidance_scale": %s}}'
    detail = _problem(_post(api, body % (INPAINTING_VERSION, constant)), 400)["detail"]
    assert detail.startswith("The request body is not valid JSON: ") and "line 1" in detail
    assert api.get("/predictions").json()["results"] == before


def test_input_nested_deeper_than_the_limit_is_refused_with_its_field(api: httpx.Client) -> None:
    nested: object = "leaf"
    for _ in range(200):
        nested = {"n": nested}
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(extra=nested)})
    [field] = _problem(created, 422)["invalid_fields"]
    assert field["field"] == "input.extra" and "nested" in field["description"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": INPAINTING_VERSION, "input": None}, "input"),
        ({"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook_events_filter": [[]]}, "webhook_events_filter"),
        (
            {"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook_events_filter": [{"a": 1}]},
            "webhook_events_filter",
        ),
        ({"version": None, "input": inpainting_input()}, "version"),
    ],
)
def test_wrongly_typed_top_level_fields_are_422_naming_the_field(api: httpx.Client, body: dict, field: str) -> None:
    fields = _problem(api.post("/predictions", json=body), 422)["invalid_fields"]
    assert field in {f["field"] for f in fields}


@pytest.mark.parametrize("edge", [1e400, -1e400, "x", None, [1]])
def test_a_cursor_with_an_impossible_time_is_a_400(api: httpx.Client, edge: object) -> None:
    raw = json.dumps({"d": "next", "t": edge, "i": "abc"}).replace("Infinity", "1e400")
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    assert "cursor" in _problem(api.get("/predictions", params={"cursor": cursor}), 400)["detail"]


def test_non_ascii_credentials_and_capabilities_are_refused_not_crashed(gateway: Gateway, api: httpx.Client) -> None:
    headers = {"Authorization": "Bearer gwk_é".encode()}
    assert httpx.get(f"{gateway.url}/v1/account", headers=headers).status_code == 401
    assert httpx.get(f"{gateway.url}/admin/v1/keys", headers=headers).status_code == 401
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    output = f"{gateway.url}/v1/predictions/{created['id']}/outputs/0/{'é' * 32}/out.png"
    assert httpx.get(output).status_code == 404
    callback = f"{gateway.url}/webhooks/upstream/{created['id']}?token={'é' * 32}"
    assert httpx.post(callback, json={}).status_code == 404
    assert api.get(f"/predictions/{created['id']}").status_code == 200


def test_a_wait_that_is_not_ascii_digits_is_ignored_before_dispatch(api: httpx.Client) -> None:
    created = api.post(
        "/predictions",
        json={"version": INPAINTING_VERSION, "input": inpainting_input()},
        headers={"Prefer": b"wait=\xb2"},  # read as latin-1: a superscript two, a digit to str.isdigit()
    )
    assert created.status_code == 201 and "preference-applied" not in created.headers


def test_an_admin_request_with_a_non_ascii_token_is_401_and_the_real_token_still_works(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/admin/v1/keys", headers={"Authorization": "Bearer \xe9".encode()}).status_code == 401
    assert httpx.get(f"{gateway.url}/admin/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
