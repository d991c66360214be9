"""The admin API and the service endpoints in the gateway's OpenAPI document."""

from __future__ import annotations

from gateway.api.openapi_parts import (
    ADMIN,
    BYTES,
    CAPABILITY,
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

_AUDIT_QUERY = ("key_id", "tenant", "action", "since", "until", "limit", "cursor")


def admin_paths() -> Json:
    key_id = path_param("key_id")
    key = json_response("The key", ref("Key"))
    with_token = ref("KeyWithToken")
    return {
        "/admin/v1/keys": {
            "post": operation(
                "admin.keys.create",
                "Create a key; its token is shown only here",
                ADMIN,
                {"201": json_response("The key and its token", with_token), **problems(400, 401, 413, 422)},
                requestBody=json_body(ref("KeyCreate")),
            ),
            "get": operation(
                "admin.keys.list",
                "All keys, or one tenant's",
                ADMIN,
                {"200": json_response("Keys", ref("KeyList")), **problems(401)},
                parameters=[query_param("tenant", {"type": "string"}, "Only this tenant's keys")],
            ),
        },
        "/admin/v1/keys/{key_id}": {
            "get": operation("admin.keys.get", "One key", ADMIN, {"200": key, **problems(401, 404)}, parameters=[key_id]),
            "patch": operation(
                "admin.keys.update",
                "Change a key's fields",
                ADMIN,
                {"200": key, **problems(400, 401, 404, 413, 422)},
                parameters=[key_id],
                requestBody=json_body(ref("KeyUpdate")),
            ),
            "delete": operation(
                "admin.keys.delete",
                "Delete a key",
                ADMIN,
                {"204": {"description": "Deleted"}, **problems(401, 404)},
                parameters=[key_id],
            ),
        },
        "/admin/v1/keys/{key_id}/disable": {
            "post": operation(
                "admin.keys.disable", "Disable a key", ADMIN, {"200": key, **problems(401, 404)}, parameters=[key_id]
            )
        },
        "/admin/v1/keys/{key_id}/rotate": {
            "post": operation(
                "admin.keys.rotate",
                "A new secret for the key; the old one works for `grace_seconds` more",
                ADMIN,
                {"200": json_response("The key and its new token", with_token), **problems(400, 401, 404, 413, 422)},
                parameters=[key_id],
                requestBody=json_body(ref("KeyRotate"), required=False),
            )
        },
        "/admin/v1/audit": {
            "get": operation(
                "admin.audit.list",
                "Audit entries of admin actions, newest first",
                ADMIN,
                {"200": json_response("Entries", ref("AuditPage")), **problems(400, 401)},
                parameters=[query_param(name, {"type": "string"}, f"Filter or page: {name}") for name in _AUDIT_QUERY],
            )
        },
    }


_DASHBOARD_FILE_TYPES = ("text/javascript", "text/css", "text/plain", "image/svg+xml")


def _dashboard_paths() -> Json:
    """The usage dashboard: a static page whose script calls the usage, limits and keys endpoints with the
    token its user pastes in."""
    return {
        "/dashboard": {
            "get": operation(
                "dashboard", "The usage dashboard page", CAPABILITY, {"200": _text_response("The page", "text/html")}
            )
        },
        "/dashboard/static/{name}": {
            "get": operation(
                "dashboard.static",
                "A script, style sheet, icon or license file of the dashboard",
                CAPABILITY,
                {"200": _text_response("The file", *_DASHBOARD_FILE_TYPES), **problems(404)},
                parameters=[path_param("name")],
            )
        },
    }


def _text_response(description: str, *media_types: str) -> Json:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}} for media_type in media_types}}


def service_paths() -> Json:
    text = {"description": "Prometheus exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}
    health = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
    ready = {"type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}}}
    return {
        "/health": {"get": operation("health", "Liveness", CAPABILITY, {"200": json_response("Alive", health)})},
        "/health/ready": {
            "get": operation(
                "ready", "Readiness: the store answers", CAPABILITY, {"200": json_response("Ready", ready), **problems(503)}
            )
        },
        "/metrics": {"get": operation("metrics", "Prometheus metrics", CAPABILITY, {"200": text})},
        "/metrics/usage": {
            "get": operation(
                "metrics.usage",
                "Usage counters per key from the shared totals (scrape one process)",
                ADMIN,
                {"200": text, **problems(401)},
            )
        },
        **_dashboard_paths(),
        "/openapi.json": {
            "get": operation("openapi", "This document", CAPABILITY, {"200": json_response("OpenAPI 3.1", {"type": "object"})})
        },
        "/webhooks/upstream/{prediction_id}": {
            "post": operation(
                "internal.webhooks.upstream",
                "Where upstreams report on a prediction (the URL carries its capability token)",
                CAPABILITY,
                {"204": {"description": "Accepted"}, **problems(404, 413, *UPSTREAM)},
                parameters=[
                    path_param("prediction_id"),
                    query_param("token", {"type": "string"}, "The prediction's callback token"),
                ],
                requestBody={"required": False, "content": {"application/json": {"schema": {}}}},
            )
        },
        "/uploads/{token}/{filename}": {
            "put": operation(
                "internal.uploads.put",
                "Where managed Cog servers upload output files (`Location` is the file's signed URL)",
                CAPABILITY,
                {
                    "201": {"description": "Stored", "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                    **problems(400, 403, 404, 413, 422),
                },
                parameters=[
                    path_param("token"),
                    path_param("filename"),
                    {"name": "X-Prediction-Id", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                requestBody={"required": True, "content": {"application/octet-stream": {"schema": BYTES}}},
            )
        },
    }
