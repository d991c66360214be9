import logging
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import (
    INPAINTING_VERSION,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    gateway_on_own_redis,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator import Fault
from tests.servers import free_port

UNAUTHENTICATED = {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text and UPSTREAM_TOKEN not in response.text
    return body


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer r8_notours", "Basic dXNlcjpwYXNz", "Bearer gwk_aaaaaaaaaaaa_" + "A" * 40]
)
def test_missing_or_wrong_tokens_get_replicates_401(gateway: Gateway, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (
        ("GET", "/v1/predictions"),
        ("POST", "/v1/predictions"),
        ("GET", "/v1/account"),
        ("GET", "/replicate/v1/predictions/x"),
    ):
        response = httpx.request(method, gateway.url + path, headers=headers, json={})
        assert _problem(response, 401) == UNAUTHENTICATED


def test_both_bearer_and_token_schemes_are_accepted(gateway: Gateway, tenant_key: str) -> None:
    for scheme in ("Bearer", "Token", "bearer"):
        assert httpx.get(f"{gateway.url}/v1/account", headers={"Authorization": f"{scheme} {tenant_key}"}).status_code == 200


def test_malformed_json_is_400_and_a_non_object_body_too(api: httpx.Client) -> None:
    assert (
        "not valid JSON"
        in _problem(api.post("/predictions", content=b"{not json", headers={"Content-Type": "application/json"}), 400)["detail"]
    )
    assert _problem(api.post("/predictions", json=[1, 2]), 400)["detail"] == "The request body must be a JSON object"


def test_bodies_over_the_limit_are_413_whether_declared_or_chunked(api: httpx.Client, gateway: Gateway) -> None:
    big = {"version": INPAINTING_VERSION, "input": inpainting_input(prompt="x" * (gateway.settings.max_body_bytes + 1))}
    assert "at most" in _problem(api.post("/predictions", json=big), 413)["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(64):
            yield b"x" * 8192

    assert _problem(api.post("/predictions", content=chunks(), headers={"Content-Type": "application/json"}), 413)


def test_unknown_routes_are_404_and_wrong_methods_405(api: httpx.Client, gateway: Gateway) -> None:
    assert _problem(httpx.get(f"{gateway.url}/nope"), 404)["detail"] == "The requested resource does not exist"
    assert _problem(api.get("/unknown-resource"), 404)
    assert _problem(api.delete("/predictions"), 405)


def test_unknown_version_and_body_shape_errors_follow_replicate(api: httpx.Client) -> None:
    body = _problem(api.post("/predictions", json={"version": "f" * 64, "input": {}}), 422)
    assert body == {
        "title": "Invalid version or not permitted",
        "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
        "status": 422,
    }
    body = _problem(api.post("/predictions", json={"model": "a/b", "input": {}}), 422)
    assert body["detail"] == "- version is required\n- Additional property model is not allowed\n"
    assert body["invalid_fields"] == [
        {"type": "required", "field": "(root)", "description": "version is required"},
        {"type": "additional_property_not_allowed", "field": "(root)", "description": "Additional property model is not allowed"},
    ]
    assert (
        _problem(api.post("/predictions", json={"version": INPAINTING_VERSION, "input": "x"}), 422)["invalid_fields"][0]["type"]
        == "invalid_type"
    )
    assert _problem(api.post("/models/nobody/nothing/predictions", json={"input": {}}), 404)


def test_input_validation_happens_before_any_upstream_call(api: httpx.Client, replicate_upstream: Upstream) -> None:
    body = _problem(
        api.post("/predictions", json={"version": INPAINTING_VERSION, "input": {"image": "/etc/passwd", "steps": 0}}), 422
    )
    assert body["title"] == "Input validation failed"
    assert {f["field"] for f in body["invalid_fields"]} == {"input", "input.image", "input.num_inference_steps"}
    assert replicate_upstream.asked_to_start_work() == []


def test_not_allowed_models_look_like_unknown_versions(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, _ = gateway.new_key(models=["acme/*"])
    with gateway.client(token) as client:
        assert _problem(client.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}), 422)[
            "title"
        ] == ("Invalid version or not permitted")
        assert _problem(client.get("/models/stability-ai/stable-diffusion-inpainting"), 404)
    assert replicate_upstream.asked_to_start_work() == []


def test_a_read_only_key_cannot_create(gateway: Gateway) -> None:
    token, _ = gateway.new_key(scopes=["read"])
    with gateway.client(token) as client:
        assert _problem(client.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}), 403)[
            "detail"
        ] == ("This API key lacks the 'predict' scope")
        assert client.get("/predictions").status_code == 200


@pytest.mark.parametrize(
    "fault,status,detail",
    [
        (Fault(route="create", status=500), 502, "The upstream provider failed with HTTP 500"),
        (Fault(route="create", status=503, retry_after=7), 503, "The upstream provider is temporarily unavailable"),
        (Fault(route="create", status=401), 502, "The upstream provider rejected the gateway's credentials"),
        (Fault(route="create", status=504), 504, "The upstream provider timed out"),
        # Too late, and nothing was created: the gateway looks it up, finds none, and answers the timeout.
        (Fault(route="create", delay=4, status=500), 504, "The upstream provider did not answer within 3s"),
        (Fault(route="create", drop_connection=True), 502, "The upstream provider closed the connection without answering"),
    ],
)
def test_upstream_failures_map_to_502_503_504_and_leave_no_prediction(
    api: httpx.Client, replicate_upstream: Upstream, fault: Fault, status: int, detail: str
) -> None:
    replicate_upstream.controls.inject(fault)
    body = _problem(api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}), status)
    assert body["detail"] == detail
    assert replicate_upstream.url.split("//")[1] not in body["detail"]
    assert api.get("/predictions").json()["results"] == []


def test_a_429_is_a_503_with_its_retry_after_and_sets_the_only_token_aside_that_long(
    tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream
) -> None:
    # A gateway of its own: the token stays set aside (in Redis) for 12 s, which the suite's gateway must not meet.
    with gateway_on_own_redis(tmp_path, catalog_path) as (_, gateway), gateway.client(gateway.new_key()[0]) as api:
        replicate_upstream.controls.inject(Fault(route="create", status=429, retry_after=12))
        create = {"version": INPAINTING_VERSION, "input": inpainting_input()}
        body = _problem(response := api.post("/predictions", json=create), 503)
        assert body["detail"] == "The upstream provider is rate limiting the gateway; retry shortly"
        assert response.headers["retry-after"] == "12"
        again = api.post("/predictions", json=create)
        assert again.status_code == 503 and again.headers["retry-after"] in ("11", "12")
        assert len(replicate_upstream.requests("POST", "/predictions")) == 1  # not sent while set aside
        assert api.get("/predictions").json()["results"] == []


def test_an_unreachable_upstream_is_502(gateway: Gateway, redis_url: str, tmp_path: Path) -> None:
    dead = free_port()
    path = tmp_path / "catalog.toml"
    path.write_text(
        gateway.settings.catalog.read_text().replace(
            str(gateway.catalog.providers["replicate"].base_url), f"http://127.0.0.1:{dead}/v1"
        )
    )
    with run_gateway(gateway_settings(redis_url, path, free_port())) as unreachable:
        token, _ = gateway.new_key()
        with unreachable.client(token) as api:
            response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
        assert _problem(response, 502)["detail"] == "The upstream provider could not be reached"
        assert str(dead) not in response.text


def test_an_unexpected_failure_is_a_generic_500_problem_without_a_traceback(
    api: httpx.Client, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(f"gw:pred:{{{created['id']}}}", "doc", "{not json")  # a record damaged outside the gateway
    finally:
        client.close()
    with caplog.at_level(logging.ERROR):
        body = _problem(api.get(f"/predictions/{created['id']}"), 500)
    assert body == {
        "title": "Internal server error",
        "detail": "The gateway failed unexpectedly; the error has been logged",
        "status": 500,
    }
    assert "unhandled error on GET" in caplog.text
