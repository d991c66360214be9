"""Every operation the gateway serves that Replicate's own OpenAPI document also describes answers, on both API
prefixes, with a body that the document's response schema accepts, and the gateway's own document's schema too
(the documents: `tests/openapi_documents.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.api.app import API_PREFIXES
from gateway.api.openapi import build_document
from tests.conftest import INPAINTING, INPAINTING_VERSION, STORY_VERSION, Gateway, Upstream, inpainting_input
from tests.openapi_documents import Document, replicate_document, shape


@dataclass
class Exchange:
    method: str
    shape: str  # the path in Replicate's document, parameters unnamed
    response: httpx.Response


class Walk:
    """Calls to one API prefix, each recorded with the operation of Replicate's document it is."""

    def __init__(self, gateway: Gateway, token: str, prefix: str) -> None:
        self.prefix = prefix
        self.client = gateway.client(token, prefix)
        self.exchanges: list[Exchange] = []

    def call(self, method: str, path: str, template: str, *, status: int, **kwargs: Any) -> httpx.Response:
        """`method path` (a path of `template`, in Replicate's document), which must answer `status`."""
        response = self.client.request(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        self.exchanges.append(Exchange(method, shape(template), response))
        return response

    def create(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        created: dict[str, Any] = self.call("POST", "/predictions", "/predictions", status=201, json=body, **kwargs).json()
        return created

    def get(self, prediction_id: str) -> dict[str, Any]:
        got: dict[str, Any] = self.call("GET", f"/predictions/{prediction_id}", "/predictions/{prediction_id}", status=200).json()
        return got

    def until(self, prediction_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (prediction := self.get(prediction_id))["status"] != status:
            assert time.monotonic() < deadline, prediction
            time.sleep(0.05)
        return prediction


def _predictions(walk: Walk, upstream: Upstream) -> None:
    """Unfinished (starting, processing), finished (succeeded, failed, canceled before and while running),
    with a deadline, streaming; created the three ways; got, listed and canceled."""
    version = {"version": INPAINTING_VERSION, "input": inpainting_input()}
    upstream.controls.configure(start_delay=0.05, run_seconds=0.1)
    succeeded = walk.create(version, headers={"Prefer": "wait=10"})
    assert succeeded["status"] == "succeeded" and succeeded["output"], succeeded
    upstream.controls.fail_next("CUDA out of memory")
    walk.until(walk.create(version)["id"], "failed")
    walk.create({"version": STORY_VERSION, "input": {"prompt": "once"}})
    upstream.controls.configure(start_delay=60)
    starting = walk.create(version, headers={"Cancel-After": "10m"})
    assert starting["status"] == "starting" and "deadline" in starting
    walk.get(starting["id"])
    canceled = walk.call("POST", f"/predictions/{starting['id']}/cancel", "/predictions/{prediction_id}/cancel", status=200)
    assert canceled.json()["status"] == "canceled"
    upstream.controls.configure(start_delay=0.05, run_seconds=60)
    running = walk.until(walk.create(version)["id"], "processing")
    walk.call("POST", f"/predictions/{running['id']}/cancel", "/predictions/{prediction_id}/cancel", status=200)
    upstream.controls.configure()
    model_path = "/models/{model_owner}/{model_name}/predictions"
    walk.call("POST", f"/models/{INPAINTING}/predictions", model_path, status=201, json={"input": inpainting_input()})
    deployment_path = "/deployments/{deployment_owner}/{deployment_name}/predictions"
    walk.call(
        "POST", "/deployments/acme/inpaint-prod/predictions", deployment_path, status=201, json={"input": inpainting_input()}
    )
    walk.call("GET", "/predictions", "/predictions", status=200)


def _catalog(walk: Walk) -> None:
    model = "/models/{model_owner}/{model_name}"
    walk.call("GET", "/models", "/models", status=200)
    walk.call("GET", f"/models/{INPAINTING}", model, status=200)
    walk.call("GET", f"/models/{INPAINTING}/versions", f"{model}/versions", status=200)
    walk.call("GET", f"/models/{INPAINTING}/versions/{INPAINTING_VERSION}", f"{model}/versions/{{version_id}}", status=200)
    walk.call("GET", "/account", "/account", status=200)
    walk.call("GET", "/webhooks/default/secret", "/webhooks/default/secret", status=200)


def _catalog_reads_and_refusals(walk: Walk) -> None:
    """Collections, hardware, search, readme, examples; and changes to the operator's catalog, refused (403)."""
    model = "/models/{model_owner}/{model_name}"
    walk.call("GET", "/collections", "/collections", status=200)
    walk.call("GET", "/collections/text-models", "/collections/{collection_slug}", status=200)
    walk.call("GET", "/hardware", "/hardware", status=200)
    walk.call("GET", "/search", "/search", status=200, params={"query": "echo"})
    walk.call("QUERY", "/models", "/models", status=200, content="echo", headers={"Content-Type": "text/plain"})
    walk.call("GET", "/models/acme/echo/readme", f"{model}/readme", status=200)
    walk.call("GET", "/models/acme/echo/examples", f"{model}/examples", status=200)
    change = {"owner": "acme", "name": "new", "visibility": "private", "hardware": "cpu"}
    walk.call("POST", "/models", "/models", status=403, json=change)
    walk.call("PATCH", f"/models/{INPAINTING}", model, status=403, json=change)
    walk.call("DELETE", f"/models/{INPAINTING}", model, status=403)
    walk.call("DELETE", f"/models/{INPAINTING}/versions/{INPAINTING_VERSION}", f"{model}/versions/{{version_id}}", status=403)


def _deployments(walk: Walk, tenant: str) -> None:
    one = "/deployments/{deployment_owner}/{deployment_name}"
    body = {
        "name": "app",
        "model": INPAINTING,
        "version": INPAINTING_VERSION,
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 3,
    }
    walk.call("POST", "/deployments", "/deployments", status=200, json=body)
    walk.call("GET", "/deployments", "/deployments", status=200)
    walk.call("GET", f"/deployments/{tenant}/app", one, status=200)
    walk.call("PATCH", f"/deployments/{tenant}/app", one, status=200, json={"max_instances": 5})
    walk.call("DELETE", f"/deployments/{tenant}/app", one, status=204)


def _trainings(walk: Walk, upstream: Upstream) -> None:
    """Created (starting), got once finished, listed, and canceled."""
    one = "/trainings/{training_id}"
    create = "/models/{model_owner}/{model_name}/versions/{version_id}/trainings"
    body = {"destination": "tenant/trained", "input": {"steps": 10}}
    upstream.controls.configure(start_delay=0.05, run_seconds=0.1)
    path = f"/models/{INPAINTING}/versions/{INPAINTING_VERSION}/trainings"
    training = walk.call("POST", path, create, status=201, json=body).json()
    deadline = time.monotonic() + 10
    while walk.call("GET", f"/trainings/{training['id']}", one, status=200).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    walk.call("GET", "/trainings", "/trainings", status=200)
    upstream.controls.configure(start_delay=60)
    running = walk.call("POST", path, create, status=201, json=body).json()
    walk.call("POST", f"/trainings/{running['id']}/cancel", f"{one}/cancel", status=200)


def _files(walk: Walk, gateway: Gateway, tenant: str) -> None:
    one = "/files/{file_id}"
    content = {"content": ("notes.txt", b"hello", "text/plain")}
    file = walk.call("POST", "/files", "/files", status=201, files=content, data={"metadata": '{"purpose": "test"}'}).json()
    walk.call("GET", f"/files/{file['id']}", one, status=200)
    walk.call("GET", "/files", "/files", status=200)
    expiry = int(time.time()) + 60
    signature = gateway.services.links.downloads.sign(tenant, file["id"], expiry)
    query = {"owner": tenant, "expiry": expiry, "signature": signature}
    download = walk.call("GET", f"/files/{file['id']}/download", f"{one}/download", status=200, params=query)
    assert download.content == b"hello"
    deleted = walk.call("DELETE", f"/files/{file['id']}", one, status=204)
    assert deleted.content == b""


@pytest.fixture(scope="module")
def replicate() -> Document:
    return replicate_document()


@pytest.fixture(scope="module", params=API_PREFIXES)
def walk(request: pytest.FixtureRequest, gateway: Gateway, replicate_upstream: Upstream) -> Iterator[Walk]:
    replicate_upstream.controls.reset()  # module-scoped: set up before the per-test reset (faults an earlier test left)
    token, key = gateway.new_key()
    walk = Walk(gateway, token, request.param)
    try:
        _predictions(walk, replicate_upstream)
        _catalog(walk)
        _files(walk, gateway, key["tenant"])
        _catalog_reads_and_refusals(walk)
        _deployments(walk, key["tenant"])
        _trainings(walk, replicate_upstream)
        yield walk
    finally:
        walk.client.close()


def _shared_operations(replicate: Document, gateway: Document) -> set[tuple[str, str]]:
    return replicate.operations() & gateway.operations()


def test_every_operation_both_documents_describe_is_walked(replicate: Document, walk: Walk) -> None:
    own = Document("gateway", build_document(API_PREFIXES), walk.prefix)
    walked = {(exchange.method, exchange.shape) for exchange in walk.exchanges}
    assert walked - _shared_operations(replicate, own) == set(), "walked operations one of the documents lacks"
    assert _shared_operations(replicate, own) - walked == set(), "served operations of Replicate's document not walked yet"


def test_every_response_matches_replicates_schema_and_the_gateways_own(replicate: Document, walk: Walk) -> None:
    documents = (replicate, Document("gateway", build_document(API_PREFIXES), walk.prefix))
    errors = [
        error
        for exchange in walk.exchanges
        for doc in documents
        for error in doc.errors(exchange.method, exchange.shape, exchange.response)
    ]
    assert not errors, "\n".join(errors)


def test_urls_stay_under_the_prefix_the_request_came_in_on(walk: Walk, gateway: Gateway) -> None:
    root = f"{gateway.url}{walk.prefix}/"
    bodies = [e.response.json() for e in walk.exchanges if e.response.headers.get("content-type") == "application/json"]
    found = [url for body in bodies for url in _urls(body)]
    assert found and [url for url in found if not url.startswith(root)] == []


def _urls(value: Any) -> Iterator[str]:
    """The gateway's own URLs in a response body (inputs excepted: they hold the caller's URLs)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in {"input", "openapi_schema"}:
                yield from _urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)
    elif isinstance(value, str) and value.startswith(("http://", "https://")):
        yield value
