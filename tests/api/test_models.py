import httpx

from tests.conftest import INPAINTING, INPAINTING_VERSION, STORY, UPSTREAM_ONLY_VERSION, Gateway


def test_model_shows_what_the_official_client_requires(api: httpx.Client, gateway: Gateway) -> None:
    model = api.get(f"/models/{INPAINTING}").json()
    assert {k: model[k] for k in ("url", "owner", "name", "visibility", "run_count")} == {
        "url": f"{gateway.url}/v1/models/{INPAINTING}",
        "owner": "stability-ai",
        "name": "stable-diffusion-inpainting",
        "visibility": "public",
        "run_count": 0,
    }
    latest = model["latest_version"]
    assert latest["id"] == INPAINTING_VERSION and latest["cog_version"] and latest["created_at"].endswith("Z")
    assert latest["openapi_schema"]["components"]["schemas"]["Output"]["type"] == "array"


def test_versions_and_models_are_listed_with_replicates_page_shape(api: httpx.Client) -> None:
    versions = api.get(f"/models/{INPAINTING}/versions").json()
    assert (versions["next"], versions["previous"], [v["id"] for v in versions["results"]]) == (None, None, [INPAINTING_VERSION])
    names = [f"{m['owner']}/{m['name']}" for m in api.get("/models").json()["results"]]
    assert names == [INPAINTING, "acme/echo", STORY]


def test_a_version_without_a_catalog_schema_shows_the_upstreams(api: httpx.Client) -> None:
    version = api.get(f"/models/acme/echo/versions/{UPSTREAM_ONLY_VERSION}").json()
    assert version["openapi_schema"]["components"]["schemas"]["Input"]["required"] == ["text"]


def test_unknown_models_versions_and_deployments_are_404(api: httpx.Client) -> None:
    for response in (
        api.get("/models/nobody/nothing"),
        api.get(f"/models/{INPAINTING}/versions/{'0' * 64}"),
        api.get(f"/models/acme/echo/versions/{INPAINTING_VERSION}"),
        api.post("/deployments/acme/missing/predictions", json={"input": {}}),
    ):
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


def test_the_allow_list_narrows_what_a_key_sees(gateway: Gateway) -> None:
    token, _ = gateway.new_key(models=["acme/*"])
    with gateway.client(token) as client:
        assert [m["name"] for m in client.get("/models").json()["results"]] == ["echo", "story"]


def test_health_answers_without_a_key(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
