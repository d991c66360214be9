"""The gateway's own OpenAPI 3.1 document, served at `GET /openapi.json`.

The tenant API appears once per API prefix (the same operations under `/v1` and `/replicate/v1`, with
prefixed operation ids), because a second `servers` entry would also move the admin API and `/health`.
Shapes follow Replicate's own document where the gateway mirrors it, and the gateway's actual responses.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import (
    openapi_catalog,
    openapi_deployments,
    openapi_images,
    openapi_providers,
    openapi_trainings,
    openapi_usage,
)
from gateway.api.openapi_admin import admin_paths, service_paths
from gateway.api.openapi_parts import (
    BINARY,
    CAPABILITY,
    OPTIONAL_TENANT,
    TENANT,
    UPSTREAM,
    Json,
    json_body,
    json_response,
    operation,
    path_param,
    problems,
    query_param,
    ref,
)
from gateway.api.openapi_schemas import SCHEMAS, SECURITY_SCHEMES
from gateway.api.responses import JSONResponse

_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "`wait` or `wait=n`: hold the answer until the prediction finishes (n is capped at 60 s).",
    "schema": {"type": "string", "pattern": "^wait(=([1-9]|[1-9][0-9]|60))?$"},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any unique string: a repeat of the request with the same key within 24 hours creates nothing and "
    "answers the prediction the first made, as it is now (with `Idempotent-Replayed: true`). Keys are the tenant's "
    "own; the same key with another request is refused (422), and while its first request is still in progress "
    "the key is busy (409). A request that fails frees its key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}
_CREATED = json_response(
    "Created; under `Prefer: wait` the finished prediction, or one still `starting` if the wait ran out",
    ref("Prediction"),
    {
        "Location": {"required": True, "schema": {"type": "string", "format": "uri"}},
        "Preference-Applied": {"required": False, "schema": {"type": "string"}},
        "Idempotent-Replayed": {
            "required": False,
            "description": "`true`: the prediction was created by an earlier request with the same `Idempotency-Key`",
            "schema": {"type": "string", "enum": ["true"]},
        },
    },
)
_BUSY = {
    "409": {
        **problems(409)["409"],
        "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
    }
}


_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "The id of the last event received: the stream resumes after it, on any gateway process.",
    "schema": {"type": "string"},
}
_EVENT_STREAM = {
    "description": "Events until `done` (`{}`, or `{\"reason\": \"canceled\"|\"error\"}` after an `error` with a `detail`)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _create(operation_id: str, summary: str, body: str, *parameters: Json) -> Json:
    return {
        "post": operation(
            operation_id,
            summary,
            TENANT,
            {"201": _CREATED, **problems(400, 401, 403, 404), **_BUSY, **problems(413, 422, *UPSTREAM)},
            parameters=[*parameters, _PREFER, _IDEMPOTENCY_KEY],
            requestBody=json_body(ref(body)),
        )
    }


def _tenant_paths() -> Json:
    """The tenant API relative to an API prefix."""
    owner, name = path_param("owner"), path_param("name")
    prediction_id = path_param("prediction_id")
    file_id = path_param("file_id")
    return {
        "/predictions": {
            **_create("predictions.create", "Create a prediction for a version", "VersionPredictionRequest"),
            "get": operation(
                "predictions.list",
                "The tenant's predictions, newest first",
                TENANT,
                {"200": json_response("A page of predictions", ref("PredictionPage")), **problems(400, 401, 403)},
                parameters=[
                    query_param("created_after", {"type": "string", "format": "date-time"}, "ISO 8601 lower bound"),
                    query_param("created_before", {"type": "string", "format": "date-time"}, "ISO 8601 upper bound"),
                    query_param("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given"),
                ],
            ),
        },
        "/predictions/{prediction_id}": {
            "get": operation(
                "predictions.get",
                "One prediction",
                TENANT,
                {"200": json_response("The prediction", ref("Prediction")), **problems(401, 403, 404, *UPSTREAM)},
                parameters=[prediction_id],
            )
        },
        "/predictions/{prediction_id}/cancel": {
            "post": operation(
                "predictions.cancel",
                "Cancel a prediction",
                TENANT,
                {"200": json_response("The prediction", ref("Prediction")), **problems(401, 403, 404, *UPSTREAM)},
                parameters=[prediction_id],
            )
        },
        "/predictions/{prediction_id}/outputs/{index}/{expiry}/{signature}/{name}": {
            "get": operation(
                "predictions.outputs.get",
                "An output file, streamed from the upstream through a signed link until its expiry",
                CAPABILITY,
                {"200": BINARY, **problems(403, 404, *UPSTREAM)},
                parameters=[
                    prediction_id,
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    {"name": "expiry", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    path_param("signature"),
                    name,
                ],
            )
        },
        "/predictions/{prediction_id}/stream/{signature}": {
            "get": operation(
                "predictions.stream",
                "The prediction's server-sent events (`urls.stream`): `output`, `logs`, `error`, `done`, each with an id",
                CAPABILITY,
                {"200": _EVENT_STREAM, **problems(404)},
                parameters=[prediction_id, path_param("signature"), _LAST_EVENT_ID],
            )
        },
        "/models/{owner}/{name}/predictions": _create(
            "models.predictions.create", "Create a prediction on the model's latest version", "PredictionRequest", owner, name
        ),
        "/deployments/{owner}/{name}/predictions": _create(
            "deployments.predictions.create",
            "Create a prediction through a deployment: the tenant's own by that name, else the catalog's",
            "PredictionRequest",
            owner,
            name,
        ),
        "/models": {
            "get": operation(
                "models.list",
                "The models the key may use",
                TENANT,
                {"200": json_response("Models", ref("ModelPage")), **problems(401, 403, *UPSTREAM)},
            )
        },
        "/models/{owner}/{name}": {
            "get": operation(
                "models.get",
                "A model and its latest version",
                TENANT,
                {"200": json_response("The model", ref("Model")), **problems(401, 403, 404, *UPSTREAM)},
                parameters=[owner, name],
            )
        },
        "/models/{owner}/{name}/versions": {
            "get": operation(
                "models.versions.list",
                "The model's versions, newest first",
                TENANT,
                {"200": json_response("Versions", ref("VersionPage")), **problems(401, 403, 404, *UPSTREAM)},
                parameters=[owner, name],
            )
        },
        "/models/{owner}/{name}/versions/{version_id}": {
            "get": operation(
                "models.versions.get",
                "One version with its OpenAPI schema",
                TENANT,
                {"200": json_response("The version", ref("Version")), **problems(401, 403, 404, *UPSTREAM)},
                parameters=[owner, name, path_param("version_id")],
            )
        },
        "/account": {
            "get": operation(
                "account.get",
                "The key's tenant",
                TENANT,
                {"200": json_response("The account", ref("Account")), **problems(401, 403)},
            )
        },
        "/webhooks/default/secret": {
            "get": operation(
                "webhooks.default.secret.get",
                "The tenant's secret for verifying the webhooks the gateway sends (Standard Webhooks signatures)",
                TENANT,
                {"200": json_response("The signing secret", ref("WebhookSecret")), **problems(401, 403)},
            )
        },
        "/files": {
            "post": operation(
                "files.create",
                "Upload a file",
                TENANT,
                {"201": json_response("The file", ref("File")), **problems(400, 401, 403, 413, 422)},
                requestBody={"required": True, "content": {"multipart/form-data": {"schema": ref("FileCreate")}}},
            ),
            "get": operation(
                "files.list",
                "The tenant's files, newest first",
                TENANT,
                {"200": json_response("A page of files", ref("FilePage")), **problems(400, 401, 403)},
                parameters=[query_param("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given")],
            ),
        },
        "/files/{file_id}": {
            "get": operation(
                "files.get",
                "One file",
                TENANT,
                {"200": json_response("The file", ref("File")), **problems(401, 403, 404)},
                parameters=[file_id],
            ),
            "delete": operation(
                "files.delete",
                "Delete a file",
                TENANT,
                {"204": {"description": "Deleted"}, **problems(401, 403, 404)},
                parameters=[file_id],
            ),
        },
        "/files/{file_id}/download": {
            "get": operation(
                "files.download",
                "The file's bytes: with the owner's key, or signed with `owner`, `expiry` and `signature`",
                OPTIONAL_TENANT,
                {"200": BINARY, **problems(401, 403, 404)},
                parameters=[
                    file_id,
                    query_param("owner", {"type": "string"}, "The tenant that signed the URL"),
                    query_param("expiry", {"type": "string"}, "Unix seconds after which the signature is refused"),
                    query_param("signature", {"type": "string"}, "The URL's signature; with it, no key is needed"),
                ],
            ),
        },
        "/files/{file_id}/download/{expiry}/{signature}/{name}": {
            "get": operation(
                "files.download.signed",
                "The file's bytes through a signed path (the form the gateway hands out)",
                CAPABILITY,
                {"200": BINARY, **problems(403, 404)},
                parameters=[file_id, path_param("expiry"), path_param("signature"), name],
            )
        },
    }


# The prediction operations also served at the host root, with no version prefix.
_ROOT_PATHS = ("/predictions", "/predictions/{prediction_id}", "/predictions/{prediction_id}/cancel")


def _renamed(item: Json, label: str) -> Json:
    renamed = copy.deepcopy(item)
    for method in renamed.values():
        method["operationId"] = f"{label}.{method['operationId']}"
    return renamed


def _limited(paths: Json) -> Json:
    """Every tenant operation may meet a rate limit (429); a create also a concurrency or money limit (402)."""
    for item in paths.values():
        for method, spec in item.items():
            spec["responses"].update(problems(429))
            if method == "post" and "Prefer" in str(spec.get("parameters")):
                spec["responses"].update(problems(402))
    return paths


def _merged(*parts: Json) -> Json:
    """Path items joined: the operations of a path declared in several parts all end up under it."""
    paths: Json = {}
    for part in parts:
        for path, item in part.items():
            paths.setdefault(path, {}).update(item)
    return paths


def build_document(api_prefixes: Sequence[str]) -> Json:
    """The whole document: the tenant API under each prefix (ids after the first prefixed with its name)."""
    paths: Json = {}
    # The images operations document their own OpenAI-shaped limit errors.
    tenant_paths = {
        **_limited(
            _merged(
                _tenant_paths(),
                openapi_usage.tenant_paths(),
                openapi_catalog.tenant_paths(),
                openapi_deployments.tenant_paths(),
                openapi_trainings.tenant_paths(),
            )
        ),
        **openapi_images.tenant_paths(),
    }
    for number, prefix in enumerate(api_prefixes):
        for path, item in tenant_paths.items():
            paths[prefix + path] = item if number == 0 else _renamed(item, prefix.strip("/").split("/")[0])
    for path in _ROOT_PATHS:
        paths[path] = _renamed(tenant_paths[path], "root")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Replicate-compatible gateway",
            "version": "1.0.0",
            "description": (
                "Replicate's predictions, models and files API with the gateway's own keys, OpenAI-compatible "
                "image generations and edits over the same predictions, and the admin API."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": {**paths, **admin_paths(), **openapi_usage.admin_paths(), **openapi_providers.admin_paths(), **service_paths()},
        "components": {
            "schemas": {
                **SCHEMAS,
                **openapi_usage.SCHEMAS,
                **openapi_images.SCHEMAS,
                **openapi_providers.SCHEMAS,
                **openapi_catalog.SCHEMAS,
                **openapi_deployments.SCHEMAS,
                **openapi_trainings.SCHEMAS,
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def routes(api_prefixes: Sequence[str]) -> list[Route]:
    document = build_document(api_prefixes)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [Route("/openapi.json", openapi, methods=["GET"])]
