"""Collections, hardware, search, the models query, readmes and examples, on both API prefixes; what a key's
allow-list hides; and the 403 of every operation that would change the operator's catalog."""

from collections.abc import Iterator

import httpx
import pytest
import replicate

from gateway.api.examples import example_id
from gateway.api.model_pages import MANAGED
from tests.conftest import INPAINTING, INPAINTING_VERSION, STORY, UPSTREAM_ONLY_VERSION, Gateway

PREFIXES = ["/v1", "/replicate/v1"]


@pytest.fixture(params=PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(gateway: Gateway, tenant_key: str, prefix: str) -> Iterator[httpx.Client]:
    with gateway.client(tenant_key, prefix) as api:
        yield api


@pytest.fixture
def echo_only(gateway: Gateway, prefix: str) -> Iterator[httpx.Client]:
    """A key whose allow-list names acme/echo alone."""
    with gateway.client(gateway.new_key(models=["acme/echo"])[0], prefix) as api:
        yield api


def _names(models: list[dict]) -> list[str]:
    return [f"{m['owner']}/{m['name']}" for m in models]


def _query(api: httpx.Client, text: str) -> httpx.Response:
    return api.request("QUERY", "/models", content=text, headers={"Content-Type": "text/plain"})


def test_collections_are_listed_as_replicates_list_items(client: httpx.Client) -> None:
    response = client.get("/collections")
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [
            {"name": "Text models", "slug": "text-models", "description": "Models that read and write text"},
            {"name": "Image editing", "slug": "image-editing", "description": "Inpainting"},
        ],
    }


def test_a_collection_shows_its_models_as_the_model_objects_of_models_get(
    client: httpx.Client, gateway: Gateway, prefix: str
) -> None:
    collection = client.get("/collections/text-models").json()
    assert {k: v for k, v in collection.items() if k != "models"} == {
        "name": "Text models",
        "slug": "text-models",
        "description": "Models that read and write text",
        "full_description": "# Text\nEcho and story.",
    }
    assert collection["models"] == [client.get("/models/acme/echo").json(), client.get(f"/models/{STORY}").json()]
    assert collection["models"][0]["url"] == f"{gateway.url}{prefix}/models/acme/echo"


def test_an_unknown_collection_is_a_404_problem(client: httpx.Client) -> None:
    response = client.get("/collections/nothing-here")
    assert (response.status_code, response.headers["content-type"]) == (404, "application/problem+json")
    assert response.json() == {"title": "Not found", "detail": "Collection nothing-here not found", "status": 404}


def test_hardware_is_what_the_providers_declare_each_sku_once(client: httpx.Client) -> None:
    response = client.get("/hardware")
    assert response.status_code == 200
    assert response.json() == [
        {"name": "Nvidia T4 GPU", "sku": "gpu-t4"},
        {"name": "Nvidia A100 (80GB) GPU", "sku": "gpu-a100-large"},
    ]


def test_search_answers_scored_models_collections_no_pages_and_the_query(client: httpx.Client) -> None:
    response = client.get("/search", params={"query": "Story token"})
    assert response.status_code == 200
    found = response.json()
    assert (found["query"], found["pages"], found["collections"]) == ("Story token", [], [])
    assert found["models"] == [
        {
            "model": client.get(f"/models/{STORY}").json(),
            "metadata": {
                "generated_description": "Tells a story about the prompt, streaming it token by token",
                "tags": ["text", "language-model"],
                "score": 2.0,  # "story" in the name (3), "token" in the description (1)
            },
        }
    ]


def test_search_ranks_by_score_then_name_finds_collections_and_honours_the_limit(client: httpx.Client) -> None:
    found = client.get("/search", params={"query": "text"}).json()
    assert [(m["model"]["name"], m["metadata"]["score"]) for m in found["models"]] == [("echo", 2.0), ("story", 2.0)]
    assert found["collections"] == [
        {
            "name": "Text models",
            "slug": "text-models",
            "description": "Models that read and write text",
            "models": ["acme/echo", STORY],
        }
    ]
    limited = client.get("/search", params={"query": "text", "limit": "1"}).json()
    assert [m["model"]["name"] for m in limited["models"]] == ["echo"]


@pytest.mark.parametrize(
    "params", [{}, {"query": "x", "limit": "0"}, {"query": "x", "limit": "51"}, {"query": "x", "limit": "two"}]
)
def test_search_without_a_query_or_with_a_limit_out_of_range_is_a_400(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/search", params=params)
    assert (response.status_code, response.headers["content-type"]) == (400, "application/problem+json")


def test_the_query_method_on_models_searches_with_the_plain_text_body(client: httpx.Client) -> None:
    response = _query(client, "ECHO")  # through uvicorn's httptools parser, as the gateway is served
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": [client.get("/models/acme/echo").json()]}
    assert _query(client, "nothing-matches").json()["results"] == []


def test_a_readme_is_markdown_as_text_plain_and_a_model_without_one_is_a_404(client: httpx.Client) -> None:
    readme = client.get("/models/acme/echo/readme")
    assert (readme.status_code, readme.headers["content-type"], readme.text) == (
        200,
        "text/plain; charset=utf-8",
        "# Echo\n\nSays what it is told.",
    )
    missing = client.get(f"/models/{INPAINTING}/readme")
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")
    assert missing.json()["detail"] == f"Model {INPAINTING} has no README"


def test_examples_are_succeeded_predictions_of_the_latest_version(client: httpx.Client, gateway: Gateway, prefix: str) -> None:
    page = client.get("/models/acme/echo/examples").json()
    prediction_id = example_id(gateway.catalog.model("acme/echo"), 0)
    url = f"{gateway.url}{prefix}/predictions/{prediction_id}"
    assert page == {
        "next": None,
        "previous": None,
        "results": [
            {
                "id": prediction_id,
                "model": "acme/echo",
                "version": UPSTREAM_ONLY_VERSION,
                "input": {"text": "hi", "repeat": 2},
                "output": "hihi",
                "logs": "",
                "error": None,
                "status": "succeeded",
                "source": "web",
                "data_removed": False,
                "created_at": "2024-01-01T00:00:00.000000Z",
                "started_at": "2024-01-01T00:00:00.000000Z",
                "completed_at": "2024-01-01T00:00:00.000000Z",
                "metrics": {"predict_time": 0.0},
                "urls": {"get": url, "cancel": f"{url}/cancel", "web": url},
            }
        ],
    }
    assert client.get(f"/models/{INPAINTING}/examples").json()["results"] == []
    assert client.get("/models/acme/echo").json()["default_example"] == page["results"][0]
    assert client.get(f"/models/{INPAINTING}").json()["default_example"] is None


def test_the_allow_list_hides_models_from_collections_search_and_the_query(echo_only: httpx.Client) -> None:
    assert _names(echo_only.get("/collections/text-models").json()["models"]) == ["acme/echo"]
    assert echo_only.get("/collections/image-editing").json()["models"] == []
    found = echo_only.get("/search", params={"query": "a"}).json()
    assert [m["model"]["name"] for m in found["models"]] == ["echo"]
    assert [(c["slug"], c["models"]) for c in found["collections"]] == [("image-editing", []), ("text-models", ["acme/echo"])]
    assert _names(_query(echo_only, "a").json()["results"]) == ["acme/echo"]
    assert echo_only.get("/models/acme/echo/readme").status_code == 200


def test_a_model_the_key_may_not_use_shows_it_no_readme_or_examples(gateway: Gateway, prefix: str) -> None:
    with gateway.client(gateway.new_key(models=[STORY])[0], prefix) as story_only:
        for path in ("/models/acme/echo/readme", "/models/acme/echo/examples"):
            response = story_only.get(path)
            assert (response.status_code, response.json()["detail"]) == (404, "Model acme/echo not found")


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/models"),
        ("PATCH", f"/models/{INPAINTING}"),
        ("DELETE", f"/models/{INPAINTING}"),
        ("DELETE", f"/models/{INPAINTING}/versions/{INPAINTING_VERSION}"),
        ("DELETE", "/models/nobody/nothing"),
    ],
)
def test_changes_to_the_catalog_are_refused_with_403(
    client: httpx.Client, gateway: Gateway, prefix: str, method: str, path: str
) -> None:
    response = client.request(method, path, json={"owner": "acme", "name": "new", "visibility": "private", "hardware": "cpu"})
    assert (response.status_code, response.headers["content-type"]) == (403, "application/problem+json")
    assert response.json() == {"title": "Forbidden", "detail": MANAGED, "status": 403}
    assert httpx.request(method, f"{gateway.url}{prefix}{path}").status_code == 401  # no key: not even the refusal
    assert client.get(f"/models/{INPAINTING}").status_code == 200


def test_the_official_client_lists_collections_hardware_and_searches_models(gateway: Gateway, tenant_key: str) -> None:
    client = replicate.Client(api_token=tenant_key, base_url=gateway.url)
    assert [c.slug for c in client.collections.list()] == ["text-models", "image-editing"]
    collection = client.collections.get("text-models")
    assert (collection.name, [f"{m.owner}/{m.name}" for m in collection]) == ("Text models", ["acme/echo", STORY])
    assert [(h.sku, h.name) for h in client.hardware.list()] == [
        ("gpu-t4", "Nvidia T4 GPU"),
        ("gpu-a100-large", "Nvidia A100 (80GB) GPU"),
    ]
    found = client.models.search("echo")
    assert [f"{m.owner}/{m.name}" for m in found.results] == ["acme/echo"]
    assert found.results[0].latest_version is not None and found.results[0].latest_version.id == UPSTREAM_ONLY_VERSION
    assert found.results[0].default_example is not None and found.results[0].default_example.output == "hihi"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/collections"),
        ("GET", "/collections/text-models"),
        ("GET", "/hardware"),
        ("GET", "/search?query=echo"),
        ("QUERY", "/models"),
        ("GET", "/models/acme/echo/readme"),
        ("GET", "/models/acme/echo/examples"),
    ],
)
def test_every_read_needs_a_key(gateway: Gateway, prefix: str, method: str, path: str) -> None:
    response = httpx.request(method, f"{gateway.url}{prefix}{path}", content="echo")
    assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")
