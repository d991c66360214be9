import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import (
    INPAINTING,
    INPAINTING_VERSION,
    UPSTREAM_ONLY_VERSION,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.emulator.predictions import output_bytes
from tests.servers import free_port

PREDICTION_KEYS = {
    "id",
    "model",
    "version",
    "input",
    "output",
    "logs",
    "error",
    "status",
    "created_at",
    "urls",
    "data_removed",
    "source",
}


def _wait_done(api: httpx.Client, prediction_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/predictions/{prediction_id}").json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"prediction {prediction_id} did not finish")


def test_create_returns_201_with_the_public_shape_and_gateway_urls(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.keys() >= PREDICTION_KEYS
    assert len(body["id"]) == 26 and body["id"].isalnum() and body["id"].islower()
    assert (body["model"], body["version"], body["status"], body["output"]) == (INPAINTING, INPAINTING_VERSION, "starting", None)
    url = f"{gateway.url}/v1/predictions/{body['id']}"
    assert body["urls"] == {"get": url, "cancel": f"{url}/cancel", "web": url}
    assert response.headers["location"] == url
    assert replicate_upstream.url not in response.text and UPSTREAM_TOKEN not in response.text
    upstream_ids = [p["id"] for p in replicate_upstream.controls.predictions()]
    assert body["id"] not in upstream_ids and len(upstream_ids) == 1


def test_the_upstream_gets_the_upstream_version_the_real_input_names_and_the_operator_token(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    ref = f"{INPAINTING}:{INPAINTING_VERSION}"
    response = api.post(
        "/predictions", json={"version": ref, "input": inpainting_input(steps=20, cfg_scale=7, sampler_name="DDIM")}
    )
    assert response.status_code == 201, response.text
    [sent] = replicate_upstream.requests("POST", "/v1/predictions")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert sent.json["version"] == INPAINTING_VERSION
    assert sent.json["input"] == inpainting_input(num_inference_steps=20, guidance_scale=7, scheduler="DDIM")
    assert response.json()["input"] == dict(sorted(sent.json["input"].items()))


def test_a_prediction_runs_to_completion_through_polling(api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(num_outputs=2)}).json()
    done = _wait_done(api, created["id"])
    assert done["status"] == "succeeded"
    assert len(done["output"]) == 2
    assert done["started_at"] and done["completed_at"] and done["metrics"]["total_time"] > 0
    assert "predict_time" in done["metrics"] and done["logs"]


def test_models_and_deployments_endpoints_create_on_the_configured_upstream_target(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    by_model = api.post(f"/models/{INPAINTING}/predictions", json={"input": inpainting_input()})
    assert by_model.status_code == 201 and by_model.json()["version"] == INPAINTING_VERSION
    by_deployment = api.post("/deployments/acme/inpaint-prod/predictions", json={"input": inpainting_input()})
    assert by_deployment.status_code == 201
    assert by_deployment.json()["deployment"] == "acme/inpaint-prod"
    assert by_deployment.json()["model"] == INPAINTING
    assert len(replicate_upstream.requests("POST", "/v1/deployments/stability-ai/inpaint-deploy/predictions")) == 1
    assert len(replicate_upstream.requests("POST", "/v1/predictions")) == 1


def test_an_aggregator_with_a_path_prefix_runs_a_model_target_and_its_schema_is_fetched_once(
    gateway: Gateway, api: httpx.Client, aggregator_upstream: Upstream
) -> None:
    bad = api.post("/predictions", json={"version": UPSTREAM_ONLY_VERSION, "input": {"repeat": 9}})
    assert bad.status_code == 422
    assert bad.json()["invalid_fields"] == [
        {"type": "required", "field": "input", "description": "text is required"},
        {"type": "number_lte", "field": "input.repeat", "description": "Must be less than or equal to 3"},
    ]
    good = api.post("/predictions", json={"version": f"acme/echo:{UPSTREAM_ONLY_VERSION}", "input": {"text": "hi"}})
    assert good.status_code == 201, good.text
    assert good.json()["model"] == "acme/echo" and good.json()["version"] == UPSTREAM_ONLY_VERSION
    [created] = aggregator_upstream.requests("POST", "/replicate/v1/models/upstream-owner/echo/predictions")
    assert created.json["input"] == {"text": "hi", "repeat": 1}
    assert len(aggregator_upstream.requests("GET", "/replicate/v1/models/upstream-owner/echo")) <= 1
    assert _wait_done(api, good.json()["id"])["status"] == "succeeded"


def test_the_same_api_is_served_under_the_aggregator_prefix(gateway: Gateway, tenant_key: str) -> None:
    with gateway.client(tenant_key, prefix="/replicate/v1") as client:
        created = client.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
        assert created.status_code == 201
        assert created.json()["urls"]["get"] == f"{gateway.url}/replicate/v1/predictions/{created.json()['id']}"
        assert client.get(f"/predictions/{created.json()['id']}").status_code == 200


def test_cancel_stops_a_running_prediction_and_is_idempotent(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(run_seconds=5)
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    canceled = api.post(f"/predictions/{created['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled" and canceled.json()["completed_at"]
    assert len(replicate_upstream.requests("POST", "/cancel")) == 1
    again = api.post(f"/predictions/{created['id']}/cancel")
    assert again.json()["status"] == "canceled"
    assert len(replicate_upstream.requests("POST", "/cancel")) == 1
    assert api.get(f"/predictions/{created['id']}").json()["status"] == "canceled"


def test_a_failed_model_run_is_reported_as_failed_with_its_error(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.fail_next("CUDA out of memory")
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    done = _wait_done(api, created["id"])
    assert (done["status"], done["error"]) == ("failed", "CUDA out of memory")


def test_tenants_never_see_each_others_predictions(gateway: Gateway, api: httpx.Client) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    other_token, _ = gateway.new_key()
    with gateway.client(other_token) as other:
        for response in (other.get(f"/predictions/{created['id']}"), other.post(f"/predictions/{created['id']}/cancel")):
            assert response.status_code == 404
            assert response.json() == {"title": "Not found", "detail": "The requested prediction does not exist", "status": 404}
        assert other.get("/predictions").json()["results"] == []
    same_tenant_token, _ = gateway.new_key(tenant=api.get("/account").json()["username"])
    with gateway.client(same_tenant_token) as colleague:
        assert colleague.get(f"/predictions/{created['id']}").status_code == 200


def test_upstream_output_files_are_served_through_signed_gateway_links(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(num_outputs=2)}).json()
    done = _wait_done(api, created["id"])
    links = done["output"]
    prefix = f"{gateway.url}/v1/predictions/{created['id']}/outputs/"
    assert [link.startswith(prefix) and link.endswith(f"/out-{i}.png") for i, link in enumerate(links)] == [True, True]
    assert replicate_upstream.url not in api.get(f"/predictions/{created['id']}").text
    [upstream] = replicate_upstream.controls.predictions()
    for index, link in enumerate(links):
        for headers in ({}, {"Authorization": "Bearer unrelated-key"}):
            response = httpx.get(link, headers=headers)
            assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            assert response.content == output_bytes(upstream["id"], f"out-{index}.png")
    [fetch, *_] = replicate_upstream.requests("GET", "/out-0.png")
    assert fetch.headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    signature = links[0].split("/")[-2]
    assert httpx.get(links[0].replace(signature, "0" * 32)).status_code == 404
    assert httpx.get(links[0].replace("/outputs/0/", "/outputs/1/")).status_code == 404
    expiry = int(links[0].split("/")[-3])
    assert abs(expiry - (time.time() + gateway.settings.output_link_seconds)) < 60
    assert httpx.get(links[0].replace(f"/{expiry}/", f"/{expiry + 1}/")).status_code == 404
    listed = api.get("/predictions").json()["results"][0]
    assert listed["output"] == links
    with gateway.client(api.headers["authorization"].split()[1], prefix="/replicate/v1") as aggregator_style:
        assert (
            aggregator_style.get(f"/predictions/{created['id']}").json()["output"][0].startswith(f"{gateway.url}/replicate/v1/")
        )


def test_a_list_page_holds_large_inputs_only_up_to_its_byte_budget_and_the_next_page_goes_on(
    redis_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    settings = gateway_settings(
        redis_url, catalog_path, free_port(), files_dir=tmp_path, max_body_bytes=2_000_000, list_page_bytes=1_000_000
    )
    with run_gateway(settings) as gateway:
        token, _ = gateway.new_key()
        with gateway.client(token) as api:
            big = [api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(prompt=c * 600_000)})
                   for c in "abc"]  # fmt: skip
            assert [r.status_code for r in big] == [201, 201, 201]
            seen, url, sizes = [], "/predictions", []
            while url:
                page = api.get(url)
                sizes.append(len(page.content))
                seen += [p["id"] for p in page.json()["results"]]
                url = page.json()["next"]
    assert seen == [r.json()["id"] for r in reversed(big)]  # each exactly once, newest first
    assert len(sizes) == 3 and max(sizes) < 1_000_000
