"""The gateway's own OpenAPI 3.1 document, served at `GET /openapi.json`.

The tenant API appears once per API prefix (the same operations under `/v1` and `/replicate/v1`, with
prefixed operation ids), because a second `servers` entry would also move the admin API and `/health`.
Shapes follow Replicate's own document where the gateway mirrors it, and the gateway's actual responses.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.openapi_schemas import SCHEMAS, SECURITY_SCHEMES

Json = dict[str, Any]

_TENANT: list[Json] = [{"tenantKey": []}]
_ADMIN: list[Json] = [{"adminToken": []}]
_CAPABILITY: list[Json] = []  # the signed URL is the credential; any Authorization header is ignored
_OPTIONAL_TENANT: list[Json] = [{"tenantKey": []}, {}]

_PROBLEM_TITLES = {
    400: "Bad request: the body is not a JSON object, or a parameter is malformed",
    401: "Unauthenticated: no valid token",
    403: "Forbidden: the key lacks the scope, or a signature is invalid or expired",
    404: "Not found",
    413: "Payload too large",
    422: "Validation failed (`invalid_fields` names each problem)",
    502: "The upstream provider failed",
    503: "The upstream provider or the store is unavailable",
    504: "The upstream provider timed out",
}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(status: str, schema: Json, headers: Json | None = None) -> Json:
    response: Json = {"description": status, "content": {"application/json": {"schema": schema}}}
    return {**response, "headers": headers} if headers else response


def _problems(*codes: int) -> Json:
    return {
        str(code): {
            "description": _PROBLEM_TITLES[code],
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        for code in codes
    }


def _path(name: str, description: str = "") -> Json:
    parameter: Json = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    return {**parameter, "description": description} if description else parameter


def _query(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _operation(operation_id: str, summary: str, security: list[Json], responses: Json, **extra: Any) -> Json:
    return {"operationId": operation_id, "summary": summary, "security": security, "responses": responses, **extra}


def _json_body(schema: Json, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "`wait` or `wait=n`: hold the answer until the prediction finishes (n is capped at 60 s).",
    "schema": {"type": "string", "pattern": "^wait(=([1-9]|[1-9][0-9]|60))?$"},
}
_UPSTREAM = (502, 503, 504)
_AUDIT_QUERY = ("key_id", "tenant", "action", "since", "until", "limit", "cursor")
_CREATED = _json(
    "Created; under `Prefer: wait` the finished prediction, or one still `starting` if the wait ran out",
    _ref("Prediction"),
    {
        "Location": {"required": True, "schema": {"type": "string", "format": "uri"}},
        "Preference-Applied": {"required": False, "schema": {"type": "string"}},
    },
)
_BYTES = {"type": "string", "format": "binary"}
_BINARY = {"description": "The file's bytes", "content": {"*/*": {"schema": _BYTES}}}


def _create(operation_id: str, summary: str, body: str, *parameters: Json) -> Json:
    return {
        "post": _operation(
            operation_id,
            summary,
            _TENANT,
            {"201": _CREATED, **_problems(400, 401, 403, 404, 413, 422, *_UPSTREAM)},
            parameters=[*parameters, _PREFER],
            requestBody=_json_body(_ref(body)),
        )
    }


def _tenant_paths() -> Json:
    """The tenant API relative to an API prefix."""
    owner, name = _path("owner"), _path("name")
    prediction_id = _path("prediction_id")
    file_id = _path("file_id")
    return {
        "/predictions": {
            **_create("predictions.create", "Create a prediction for a version", "VersionPredictionRequest"),
            "get": _operation(
                "predictions.list",
                "The tenant's predictions, newest first",
                _TENANT,
                {"200": _json("A page of predictions", _ref("PredictionPage")), **_problems(400, 401, 403)},
                parameters=[
                    _query("created_after", {"type": "string", "format": "date-time"}, "ISO 8601 lower bound"),
                    _query("created_before", {"type": "string", "format": "date-time"}, "ISO 8601 upper bound"),
                    _query("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given"),
                ],
            ),
        },
        "/predictions/{prediction_id}": {
            "get": _operation(
                "predictions.get",
                "One prediction",
                _TENANT,
                {"200": _json("The prediction", _ref("Prediction")), **_problems(401, 403, 404, *_UPSTREAM)},
                parameters=[prediction_id],
            )
        },
        "/predictions/{prediction_id}/cancel": {
            "post": _operation(
                "predictions.cancel",
                "Cancel a prediction",
                _TENANT,
                {"200": _json("The prediction", _ref("Prediction")), **_problems(401, 403, 404, *_UPSTREAM)},
                parameters=[prediction_id],
            )
        },
        "/predictions/{prediction_id}/outputs/{index}/{expiry}/{signature}/{name}": {
            "get": _operation(
                "predictions.outputs.get",
                "An output file, streamed from the upstream through a signed link until its expiry",
                _CAPABILITY,
                {"200": _BINARY, **_problems(403, 404, *_UPSTREAM)},
                parameters=[
                    prediction_id,
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    {"name": "expiry", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                    _path("signature"),
                    name,
                ],
            )
        },
        "/models/{owner}/{name}/predictions": _create(
            "models.predictions.create", "Create a prediction on the model's latest version", "PredictionRequest", owner, name
        ),
        "/deployments/{owner}/{name}/predictions": _create(
            "deployments.predictions.create", "Create a prediction through a deployment", "PredictionRequest", owner, name
        ),
        "/models": {
            "get": _operation(
                "models.list",
                "The models the key may use",
                _TENANT,
                {"200": _json("Models", _ref("ModelPage")), **_problems(401, 403, *_UPSTREAM)},
            )
        },
        "/models/{owner}/{name}": {
            "get": _operation(
                "models.get",
                "A model and its latest version",
                _TENANT,
                {"200": _json("The model", _ref("Model")), **_problems(401, 403, 404, *_UPSTREAM)},
                parameters=[owner, name],
            )
        },
        "/models/{owner}/{name}/versions": {
            "get": _operation(
                "models.versions.list",
                "The model's versions, newest first",
                _TENANT,
                {"200": _json("Versions", _ref("VersionPage")), **_problems(401, 403, 404, *_UPSTREAM)},
                parameters=[owner, name],
            )
        },
        "/models/{owner}/{name}/versions/{version_id}": {
            "get": _operation(
                "models.versions.get",
                "One version with its OpenAPI schema",
                _TENANT,
                {"200": _json("The version", _ref("Version")), **_problems(401, 403, 404, *_UPSTREAM)},
                parameters=[owner, name, _path("version_id")],
            )
        },
        "/account": {
            "get": _operation(
                "account.get",
                "The key's tenant",
                _TENANT,
                {"200": _json("The account", _ref("Account")), **_problems(401, 403)},
            )
        },
        "/files": {
            "post": _operation(
                "files.create",
                "Upload a file",
                _TENANT,
                {"201": _json("The file", _ref("File")), **_problems(400, 401, 403, 413, 422)},
                requestBody={"required": True, "content": {"multipart/form-data": {"schema": _ref("FileCreate")}}},
            ),
            "get": _operation(
                "files.list",
                "The tenant's files, newest first",
                _TENANT,
                {"200": _json("A page of files", _ref("FilePage")), **_problems(400, 401, 403)},
                parameters=[_query("cursor", {"type": "string"}, "Opaque; follow `next` and `previous` as given")],
            ),
        },
        "/files/{file_id}": {
            "get": _operation(
                "files.get",
                "One file",
                _TENANT,
                {"200": _json("The file", _ref("File")), **_problems(401, 403, 404)},
                parameters=[file_id],
            ),
            "delete": _operation(
                "files.delete",
                "Delete a file",
                _TENANT,
                {"204": {"description": "Deleted"}, **_problems(401, 403, 404)},
                parameters=[file_id],
            ),
        },
        "/files/{file_id}/download": {
            "get": _operation(
                "files.download",
                "The file's bytes: with the owner's key, or signed with `owner`, `expiry` and `signature`",
                _OPTIONAL_TENANT,
                {"200": _BINARY, **_problems(401, 403, 404)},
                parameters=[
                    file_id,
                    _query("owner", {"type": "string"}, "The tenant that signed the URL"),
                    _query("expiry", {"type": "string"}, "Unix seconds after which the signature is refused"),
                    _query("signature", {"type": "string"}, "The URL's signature; with it, no key is needed"),
                ],
            ),
        },
        "/files/{file_id}/download/{expiry}/{signature}/{name}": {
            "get": _operation(
                "files.download.signed",
                "The file's bytes through a signed path (the form the gateway hands out)",
                _CAPABILITY,
                {"200": _BINARY, **_problems(403, 404)},
                parameters=[file_id, _path("expiry"), _path("signature"), name],
            )
        },
    }


def _admin_paths() -> Json:
    key_id = _path("key_id")
    key = _json("The key", _ref("Key"))
    with_token = _ref("KeyWithToken")
    return {
        "/admin/v1/keys": {
            "post": _operation(
                "admin.keys.create",
                "Create a key; its token is shown only here",
                _ADMIN,
                {"201": _json("The key and its token", with_token), **_problems(400, 401, 413, 422)},
                requestBody=_json_body(_ref("KeyCreate")),
            ),
            "get": _operation(
                "admin.keys.list",
                "All keys, or one tenant's",
                _ADMIN,
                {"200": _json("Keys", _ref("KeyList")), **_problems(401)},
                parameters=[_query("tenant", {"type": "string"}, "Only this tenant's keys")],
            ),
        },
        "/admin/v1/keys/{key_id}": {
            "get": _operation("admin.keys.get", "One key", _ADMIN, {"200": key, **_problems(401, 404)}, parameters=[key_id]),
            "patch": _operation(
                "admin.keys.update",
                "Change a key's fields",
                _ADMIN,
                {"200": key, **_problems(400, 401, 404, 413, 422)},
                parameters=[key_id],
                requestBody=_json_body(_ref("KeyUpdate")),
            ),
            "delete": _operation(
                "admin.keys.delete",
                "Delete a key",
                _ADMIN,
                {"204": {"description": "Deleted"}, **_problems(401, 404)},
                parameters=[key_id],
            ),
        },
        "/admin/v1/keys/{key_id}/disable": {
            "post": _operation(
                "admin.keys.disable", "Disable a key", _ADMIN, {"200": key, **_problems(401, 404)}, parameters=[key_id]
            )
        },
        "/admin/v1/keys/{key_id}/rotate": {
            "post": _operation(
                "admin.keys.rotate",
                "A new secret for the key; the old one works for `grace_seconds` more",
                _ADMIN,
                {"200": _json("The key and its new token", with_token), **_problems(400, 401, 404, 413, 422)},
                parameters=[key_id],
                requestBody=_json_body(_ref("KeyRotate"), required=False),
            )
        },
        "/admin/v1/audit": {
            "get": _operation(
                "admin.audit.list",
                "Audit entries of admin actions, newest first",
                _ADMIN,
                {"200": _json("Entries", _ref("AuditPage")), **_problems(400, 401)},
                parameters=[_query(name, {"type": "string"}, f"Filter or page: {name}") for name in _AUDIT_QUERY],
            )
        },
    }


def _service_paths() -> Json:
    text = {"description": "Prometheus exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}
    health = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    ready = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}}
    return {
        "/health": {"get": _operation("health", "Liveness", _CAPABILITY, {"200": _json("Alive", health)})},
        "/health/ready": {
            "get": _operation(
                "ready", "Readiness: the store answers", _CAPABILITY, {"200": _json("Ready", ready), **_problems(503)}
            )
        },
        "/metrics": {"get": _operation("metrics", "Prometheus metrics", _CAPABILITY, {"200": text})},
        "/openapi.json": {
            "get": _operation("openapi", "This document", _CAPABILITY, {"200": _json("OpenAPI 3.1", {"type": "object"})})
        },
        "/webhooks/upstream/{prediction_id}": {
            "post": _operation(
                "internal.webhooks.upstream",
                "Where upstreams report on a prediction (the URL carries its capability token)",
                _CAPABILITY,
                {"204": {"description": "Accepted"}, **_problems(404, 413, *_UPSTREAM)},
                parameters=[_path("prediction_id"), _query("token", {"type": "string"}, "The prediction's callback token")],
                requestBody={"required": False, "content": {"application/json": {"schema": {}}}},
            )
        },
        "/uploads/{token}/{filename}": {
            "put": _operation(
                "internal.uploads.put",
                "Where managed Cog servers upload output files (`Location` is the file's signed URL)",
                _CAPABILITY,
                {
                    "201": {"description": "Stored", "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                    **_problems(400, 403, 404, 413, 422),
                },
                parameters=[
                    _path("token"),
                    _path("filename"),
                    {"name": "X-Prediction-Id", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                requestBody={"required": True, "content": {"application/octet-stream": {"schema": _BYTES}}},
            )
        },
    }


def build_document(api_prefixes: Sequence[str]) -> Json:
    """The whole document: the tenant API under each prefix (ids after the first prefixed with its name)."""
    paths: Json = {}
    for number, prefix in enumerate(api_prefixes):
        for path, item in _tenant_paths().items():
            paths[prefix + path] = item if number == 0 else _renamed(item, prefix.strip("/").split("/")[0])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Replicate-compatible gateway",
            "version": "1.0.0",
            "description": "Replicate's predictions, models and files API with the gateway's own keys, and the admin API.",
        },
        "servers": [{"url": "/"}],
        "paths": {**paths, **_admin_paths(), **_service_paths()},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _renamed(item: Json, label: str) -> Json:
    renamed = copy.deepcopy(item)
    for operation in renamed.values():
        operation["operationId"] = f"{label}.{operation['operationId']}"
    return renamed


def routes(api_prefixes: Sequence[str]) -> list[Route]:
    document = build_document(api_prefixes)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [Route("/openapi.json", openapi, methods=["GET"])]
