"""Deployment endpoints: create, list, get, update (a new release) and delete; predictions through a deployment are
created in `predictions`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.requests import api_root, caller, json_object, services
from gateway.api.responses import JSONResponse
from gateway.audit import Actor, new_request_id
from gateway.deployments import Deployment, Release
from gateway.errors import InvalidInput
from gateway.keys import KeyRecord
from gateway.timestamps import timestamp

_STRINGS = ("name", "model", "version", "hardware")
_MOST_INSTANCES = {"min_instances": 5, "max_instances": 20}  # Replicate's bounds
_CREATE_FIELDS = frozenset({*_STRINGS, *_MOST_INSTANCES, "input_defaults"})
_CREATE_REQUIRED = (*_STRINGS, *_MOST_INSTANCES)
_UPDATE_FIELDS = frozenset({"version", "hardware", *_MOST_INSTANCES, "input_defaults"})


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    """Replicate's deployment object; `configuration.input_defaults` is the gateway's own addition."""
    release = deployment.release
    return {
        "owner": deployment.owner,
        "name": deployment.name,
        "current_release": {
            "number": deployment.number,
            "model": release.model,
            "version": release.version,
            "created_at": timestamp(deployment.released_at),
            # The account that made the release: the owner, shown as `GET /v1/account` shows a tenant.
            "created_by": {"type": "organization", "username": deployment.owner, "name": deployment.owner},
            "configuration": {
                "hardware": release.hardware,
                "min_instances": release.min_instances,
                "max_instances": release.max_instances,
                "input_defaults": release.input_defaults,
            },
        },
    }


async def create_deployment(request: Request) -> Response:
    key = await caller(request, "predict")
    body = _checked(await json_object(request), _CREATE_FIELDS, _CREATE_REQUIRED)
    release = Release(
        body["model"],
        body["version"],
        body["hardware"],
        body["min_instances"],
        body["max_instances"],
        body.get("input_defaults", {}),
    )
    deployment = await services(request).deployments.create(key, body["name"], release, _actor(request, key))
    return JSONResponse(deployment_json(deployment))  # 200, as Replicate's document has it


async def list_deployments(request: Request) -> Response:
    key = await caller(request, "read")
    page = await services(request).deployments.list(key, request.query_params.get("cursor"))
    root = api_root(request)
    return JSONResponse(
        {
            "next": _page_url(root, page.next_cursor),
            "previous": _page_url(root, page.previous_cursor),
            "results": [deployment_json(d) for d in page.deployments],
        }
    )


async def get_deployment(request: Request) -> Response:
    key = await caller(request, "read")
    deployment = await services(request).deployments.get(key, *_path_name(request))
    return JSONResponse(deployment_json(deployment))


async def update_deployment(request: Request) -> Response:
    key = await caller(request, "predict")
    changes = _checked(await json_object(request, required=False), _UPDATE_FIELDS, ())
    deployment = await services(request).deployments.update(key, *_path_name(request), changes, _actor(request, key))
    return JSONResponse(deployment_json(deployment))


async def delete_deployment(request: Request) -> Response:
    key = await caller(request, "predict")
    await services(request).deployments.delete(key, *_path_name(request), _actor(request, key))
    return Response(status_code=204)


def _actor(request: Request, key: KeyRecord) -> Actor:
    """The tenant's key, for the audit log (its id, never its secret)."""
    return Actor("tenant-key", key.key_id, getattr(request.state, "request_id", None) or new_request_id())


def _path_name(request: Request) -> tuple[str, str]:
    return request.path_params["owner"], request.path_params["name"]


def _checked(body: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...]) -> dict[str, Any]:
    """The body, when it has the required fields, no others, and each of the right type and range."""
    problems = [_problem("required", name, f"{name} is required") for name in required if name not in body]
    problems += [
        _problem("additional_property_not_allowed", name, f"Additional property {name} is not allowed")
        for name in body
        if name not in allowed
    ]
    problems += [problem for name, value in body.items() if name in allowed for problem in _value_problems(name, value)]
    if problems:
        raise InvalidInput(problems, title="Invalid request body")
    return body


def _value_problems(name: str, value: Any) -> list[dict[str, str]]:
    if name == "input_defaults":
        return [] if isinstance(value, dict) else [_problem("invalid_type", name, "Must be an object")]
    if name in _MOST_INSTANCES:
        most = _MOST_INSTANCES[name]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most:
            return []
        return [_problem("invalid_type", name, f"Must be an integer from 0 to {most}")]
    if isinstance(value, str) and value:
        return []
    return [_problem("invalid_type", name, "Must be a non-empty string")]


def _problem(kind: str, field: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": field, "description": description}


def _page_url(root: str, cursor: str | None) -> str | None:
    return None if cursor is None else f"{root}/deployments?{urlencode({'cursor': cursor})}"


routes = [
    Route("/deployments", create_deployment, methods=["POST"]),
    Route("/deployments", list_deployments, methods=["GET"]),
    Route("/deployments/{owner}/{name}", get_deployment, methods=["GET"]),
    Route("/deployments/{owner}/{name}", update_deployment, methods=["PATCH"]),
    Route("/deployments/{owner}/{name}", delete_deployment, methods=["DELETE"]),
]
