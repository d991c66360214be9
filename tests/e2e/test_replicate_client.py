"""The unmodified official `replicate` client (1.0.7) against the gateway, with only a base URL change."""

from collections.abc import Iterator

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from tests.conftest import INPAINTING, INPAINTING_VERSION, Gateway, Upstream, inpainting_input


@pytest.fixture
def client(gateway: Gateway, tenant_key: str) -> Iterator[replicate.Client]:
    yield replicate.Client(api_token=tenant_key, base_url=gateway.url)


def test_run_with_a_qualified_version_returns_the_models_output(gateway: Gateway, client: replicate.Client) -> None:
    output = client.run(f"{INPAINTING}:{INPAINTING_VERSION}", input=inpainting_input(num_outputs=2), use_file_output=False)
    assert isinstance(output, list) and len(output) == 2
    assert all(url.startswith(f"{gateway.url}/v1/predictions/") for url in output)
    assert httpx.get(output[0]).content.startswith(b"emulated output out-0.png")


def test_run_with_the_aggregator_parameter_names(client: replicate.Client, replicate_upstream: Upstream) -> None:
    output = client.run(
        f"{INPAINTING}:{INPAINTING_VERSION}", input=inpainting_input(steps=10, cfg_scale=5, sampler_name="K_EULER")
    )
    assert len(output) == 1
    [sent] = replicate_upstream.requests("POST", "/v1/predictions")
    assert sent.json["input"]["num_inference_steps"] == 10 and sent.json["input"]["guidance_scale"] == 5
    assert sent.json["input"]["scheduler"] == "K_EULER" and "steps" not in sent.json["input"]


def test_run_by_model_name_and_a_failed_run_raises_model_error(client: replicate.Client, replicate_upstream: Upstream) -> None:
    assert client.run(INPAINTING, input=inpainting_input(), use_file_output=False)
    replicate_upstream.controls.fail_next("NSFW content detected")
    with pytest.raises(ModelError, match="NSFW content detected"):
        client.run(f"{INPAINTING}:{INPAINTING_VERSION}", input=inpainting_input())


def test_invalid_input_and_a_bad_token_surface_as_replicate_errors(gateway: Gateway, client: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as caught:
        client.run(f"{INPAINTING}:{INPAINTING_VERSION}", input={"prompt": "no image"})
    assert caught.value.status == 422 and caught.value.title == "Input validation failed"
    assert "image is required" in str(caught.value.detail)
    with pytest.raises(ReplicateError) as caught:
        replicate.Client(api_token="r8_wrong", base_url=gateway.url).predictions.list()
    assert caught.value.status == 401 and caught.value.detail == "You did not pass a valid authentication token"


def test_predictions_create_get_wait_and_cancel(client: replicate.Client, replicate_upstream: Upstream) -> None:
    prediction = client.predictions.create(version=INPAINTING_VERSION, input=inpainting_input())
    assert prediction.status == "starting" and prediction.model == INPAINTING
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output
    assert client.predictions.get(prediction.id).output == prediction.output
    replicate_upstream.controls.configure(run_seconds=10)
    slow = client.predictions.create(version=INPAINTING_VERSION, input=inpainting_input())
    slow.cancel()
    slow.reload()
    assert slow.status == "canceled"


def test_models_versions_and_account(client: replicate.Client) -> None:
    model = client.models.get(INPAINTING)
    assert (model.owner, model.name, model.visibility) == ("stability-ai", "stable-diffusion-inpainting", "public")
    assert model.latest_version is not None and model.latest_version.id == INPAINTING_VERSION
    version = model.versions.get(INPAINTING_VERSION)
    assert version.cog_version and version.openapi_schema["components"]["schemas"]["Input"]["required"] == ["image", "mask"]
    assert client.accounts.current().username


def test_listing_pages_through_more_than_150_predictions_newest_first(
    gateway: Gateway, tenant_key: str, client: replicate.Client
) -> None:
    with httpx.Client(base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {tenant_key}"}, timeout=10) as api:
        created = [
            api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()["id"]
            for _ in range(155)
        ]
    first = client.predictions.list()
    assert len(first.results) == 100 and first.next and first.next.startswith(f"{gateway.url}/v1/predictions?cursor=")
    assert first.previous is None
    second = client.predictions.list(first.next)
    assert len(second.results) == 55 and second.next is None and second.previous
    listed = [p.id for p in first.results + second.results]
    assert listed == list(reversed(created))
    back = client.predictions.list(second.previous)
    assert [p.id for p in back.results] == [p.id for p in first.results] and back.previous is None
    assert [p.id for page in replicate.paginate(client.predictions.list) for p in page] == listed


def test_listing_filters_by_creation_time(gateway: Gateway, tenant_key: str) -> None:
    with httpx.Client(base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {tenant_key}"}, timeout=10) as api:
        first = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
        second = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
        after = api.get("/predictions", params={"created_after": first["created_at"]}).json()["results"]
        before = api.get("/predictions", params={"created_before": second["created_at"]}).json()["results"]
        assert [p["id"] for p in after] == [second["id"]]
        assert [p["id"] for p in before] == [first["id"]]
        assert api.get("/predictions", params={"created_after": "yesterday"}).status_code == 400
        assert api.get("/predictions", params={"cursor": "garbage"}).status_code == 400
