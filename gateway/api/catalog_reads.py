"""Read-only views of the catalog beyond models: collections, hardware, search and the models query.

Each shows only what the caller's key may list (`models.listed`): a collection shows its allowed models only."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.models import listed, model_json
from gateway.api.requests import caller, services
from gateway.api.responses import JSONResponse
from gateway.config import ModelConfig
from gateway.config_listing import CollectionConfig
from gateway.errors import BadRequest
from gateway.keys import KeyRecord
from gateway.search import rank_collections, rank_models

DEFAULT_SEARCH_LIMIT = 20
MAX_SEARCH_LIMIT = 50  # Replicate's bounds for `limit`


async def list_collections(request: Request) -> Response:
    await caller(request, "read")
    results = [_collection_item(c) for c in services(request).catalog.collections()]
    return JSONResponse({"next": None, "previous": None, "results": results})


async def get_collection(request: Request) -> Response:
    key = await caller(request, "read")
    collection = services(request).catalog.collection(request.path_params["slug"])
    models = [await model_json(request, m) for m in _listed_members(key, request, collection)]
    body = {**_collection_item(collection), "full_description": collection.full_description, "models": models}
    return JSONResponse(body)


async def list_hardware(request: Request) -> Response:
    await caller(request, "read")
    return JSONResponse([{"name": h.name, "sku": h.sku} for h in services(request).catalog.hardware()])


async def search(request: Request) -> Response:
    """Replicate's `GET /search`: models with metadata (score: see `gateway.search`), collections, no pages."""
    key = await caller(request, "read")
    query, limit = request.query_params.get("query"), _limit(request.query_params.get("limit"))
    if query is None:
        raise BadRequest("The query parameter `query` is required")
    models = rank_models(_listed_models(key, request), query)[:limit]
    collections = rank_collections(services(request).catalog.collections(), query)[:limit]
    return JSONResponse(
        {
            "query": query,
            "models": [{"model": await model_json(request, m), "metadata": _metadata(m, score)} for m, score in models],
            "collections": [_search_collection(key, request, c) for c, _ in collections],
            "pages": [],
        }
    )


async def query_models(request: Request) -> Response:
    """Replicate's `QUERY /models` (models.search): the plain-text body is the query; a page of models, best first."""
    key = await caller(request, "read")
    try:
        query = (await request.body()).decode()
    except UnicodeDecodeError:
        raise BadRequest("The query must be UTF-8 text") from None
    ranked = rank_models(_listed_models(key, request), query)
    return JSONResponse({"next": None, "previous": None, "results": [await model_json(request, m) for m, _ in ranked]})


def _limit(given: str | None) -> int:
    if given is None:
        return DEFAULT_SEARCH_LIMIT
    if not given.isascii() or not given.isdigit() or not 1 <= int(given) <= MAX_SEARCH_LIMIT:
        raise BadRequest(f"`limit` must be an integer from 1 to {MAX_SEARCH_LIMIT}")
    return int(given)


def _listed_models(key: KeyRecord, request: Request) -> list[ModelConfig]:
    return [m for m in services(request).catalog.models() if listed(key, m)]


def _listed_members(key: KeyRecord, request: Request, collection: CollectionConfig) -> list[ModelConfig]:
    catalog = services(request).catalog
    return [m for m in (catalog.model(name) for name in collection.models) if listed(key, m)]


def _collection_item(collection: CollectionConfig) -> dict[str, Any]:
    return {"name": collection.name, "slug": collection.slug, "description": collection.description}


def _search_collection(key: KeyRecord, request: Request, collection: CollectionConfig) -> dict[str, Any]:
    models = [m.name for m in _listed_members(key, request, collection)]
    return {**_collection_item(collection), "models": models}


def _metadata(model: ModelConfig, score: float) -> dict[str, Any]:
    return {"generated_description": model.description, "tags": list(model.tags), "score": score}


routes = [
    Route("/collections", list_collections, methods=["GET"]),
    Route("/collections/{slug}", get_collection, methods=["GET"]),
    Route("/hardware", list_hardware, methods=["GET"]),
    Route("/search", search, methods=["GET"]),
    Route("/models", query_models, methods=["QUERY"]),
]
