import re

import httpx
from starlette.routing import BaseRoute, Mount, Route

from gateway.api import (
    catalog_reads,
    deployments,
    files,
    model_pages,
    models,
    openai_images,
    predictions,
    streams,
    trainings,
    usage,
    webhooks,
)
from gateway.api.app import API_PREFIXES
from gateway.api.openapi import build_document
from tests.conftest import Gateway

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "query"}


def _app_operations(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(METHOD, path) for every route, with converters dropped (`{index:int}` -> `{index}`) and HEAD left out."""
    operations = set()
    for route in routes:
        if isinstance(route, Mount):
            operations |= _app_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
            operations |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return operations


def _documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in _HTTP_METHODS}


def test_the_document_lists_exactly_the_routes_the_app_serves(gateway: Gateway) -> None:
    served = _app_operations(gateway.app.routes)
    documented = _documented_operations(build_document(API_PREFIXES))
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented operations the app does not serve"
    assert ("GET", "/replicate/v1/files/{file_id}/download/{expiry}/{signature}/{name}") in served  # the walk reaches Mounts


def test_the_document_is_served_as_openapi_3_1(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_document(API_PREFIXES)
    assert response.json()["openapi"] == "3.1.0"


def test_operation_ids_are_unique_and_each_prefix_documents_the_same_operations() -> None:
    document = build_document(API_PREFIXES)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    v1 = {(m, p.removeprefix("/v1")) for m, p in _documented_operations(document) if p.startswith("/v1/")}
    aggregator = {
        (m, p.removeprefix("/replicate/v1")) for m, p in _documented_operations(document) if p.startswith("/replicate/v1/")
    }
    assert v1 == aggregator and len(v1) == len(
        predictions.routes + streams.routes + models.routes + files.routes + webhooks.routes + usage.routes
        + openai_images.routes + catalog_reads.routes + model_pages.routes + deployments.routes + trainings.routes
    )


def test_tenant_and_admin_operations_name_their_own_bearer_schemes() -> None:
    document = build_document(API_PREFIXES)
    schemes = document["components"]["securitySchemes"]
    assert schemes["tenantKey"] == {**schemes["tenantKey"], "type": "http", "scheme": "bearer"}
    assert schemes["adminToken"] == {**schemes["adminToken"], "type": "http", "scheme": "bearer"}
    assert document["paths"]["/v1/predictions"]["post"]["security"] == [{"tenantKey": []}]
    assert document["paths"]["/admin/v1/keys"]["post"]["security"] == [{"adminToken": []}]
    assert document["paths"]["/v1/files/{file_id}/download/{expiry}/{signature}/{name}"]["get"]["security"] == []
    assert document["paths"]["/v1/predictions/{prediction_id}/stream/{signature}"]["get"]["security"] == []
