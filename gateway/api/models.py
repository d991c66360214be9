"""Model, version and account endpoints, answered from the catalog and the caller's key."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.examples import example_predictions
from gateway.api.requests import api_root, caller, services
from gateway.api.responses import JSONResponse
from gateway.catalog import Resolved
from gateway.config import ModelConfig
from gateway.errors import NotFound
from gateway.keys import KeyRecord
from gateway.schemas import PERMISSIVE_SCHEMA
from gateway.timestamps import timestamp


async def get_model(request: Request) -> Response:
    key = await caller(request, "read")
    return JSONResponse(await model_json(request, visible_model(key, request)))


async def list_versions(request: Request) -> Response:
    key = await caller(request, "read")
    model = visible_model(key, request)
    catalog = services(request).catalog
    versions = [
        await _version_json(request, catalog.resolve_model_version(model.name, v.id))
        for v in model.versions
        if key.allows(model.name, v.id)
    ]
    return JSONResponse({"next": None, "previous": None, "results": versions})


async def get_version(request: Request) -> Response:
    key = await caller(request, "read")
    model = visible_model(key, request)
    version_id = request.path_params["version_id"]
    if not key.allows(model.name, version_id):
        raise NotFound(f"Version {version_id} of model {model.name} not found")
    return JSONResponse(await _version_json(request, services(request).catalog.resolve_model_version(model.name, version_id)))


async def list_models(request: Request) -> Response:
    key = await caller(request, "read")
    catalog = services(request).catalog
    results = [await model_json(request, m) for m in catalog.models() if listed(key, m)]
    return JSONResponse({"next": None, "previous": None, "results": results})


async def get_account(request: Request) -> Response:
    key = await caller(request, "read")
    # Replicate's document has no null for `github_url` and `avatar_url`: a tenant has neither, so they are left out.
    return JSONResponse({"type": "organization", "username": key.tenant, "name": key.tenant})


def listed(key: KeyRecord, model: ModelConfig) -> bool:
    """Whether lists (models, collections, search) show the model to the key: its latest version is allowed."""
    return key.allows(model.name, model.versions[0].id)


def visible_model(key: KeyRecord, request: Request) -> ModelConfig:
    """The path's `owner/name`, if the key may use any of its versions; NotFound otherwise."""
    name = f"{request.path_params['owner']}/{request.path_params['name']}"
    model = services(request).catalog.model(name)
    if not any(key.allows(name, v.id) for v in model.versions):
        raise NotFound(f"Model {name} not found")
    return model


async def model_json(request: Request, model: ModelConfig) -> dict[str, Any]:
    """Replicate's model object, with the latest version."""
    latest = services(request).catalog.resolve_model_version(model.name, model.versions[0].id)
    owner, name = model.name.split("/")
    return {
        "url": f"{api_root(request)}/models/{model.name}",
        "owner": owner,
        "name": name,
        **({"description": model.description} if model.description else {}),  # a string or absent, never null
        "visibility": model.visibility,
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": next(iter(example_predictions(request, model)), None),
        "latest_version": await _version_json(request, latest),
        "is_official": False,
    }


async def _version_json(request: Request, resolved: Resolved) -> dict[str, Any]:
    document = await services(request).schemas.document(resolved)
    return {
        "id": resolved.version.id,
        "created_at": timestamp(resolved.version.created_at.timestamp()),
        "cog_version": resolved.version.cog_version,
        "openapi_schema": document or PERMISSIVE_SCHEMA,
    }


routes = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/{owner}/{name}", get_model, methods=["GET"]),
    Route("/models/{owner}/{name}/versions", list_versions, methods=["GET"]),
    Route("/models/{owner}/{name}/versions/{version_id}", get_version, methods=["GET"]),
    Route("/account", get_account, methods=["GET"]),
]
