"""The components of the gateway's OpenAPI document: the wire shapes of its requests and responses, its security schemes."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

_STRING: Json = {"type": "string"}
_URI: Json = {"type": "string", "format": "uri"}
_TIME: Json = {"type": "string", "format": "date-time"}
_WEBHOOK_EVENTS: Json = {"type": "array", "items": {"enum": ["start", "output", "logs", "completed"]}}


def _nullable(schema: Json) -> Json:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: list[str], properties: Json, *, extra: bool = True) -> Json:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": extra}


def _page(item: str) -> Json:
    return _object(
        ["next", "previous", "results"],
        {
            "next": _nullable(_URI),
            "previous": _nullable(_URI),
            "results": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        },
    )


_PREDICTION_REQUEST: Json = {
    "input": {"type": "object", "description": "The model's input; validated against the version's schema"},
    "webhook": {**_URI, "description": "An http(s) URL to POST the prediction to as it changes"},
    "webhook_events_filter": _WEBHOOK_EVENTS,
    "webhook_completed": {**_URI, "description": "Legacy: a webhook for the `completed` event only"},
    "stream": {"type": "boolean", "description": "Deprecated and ignored"},
}

_PREDICTION: Json = _object(
    ["id", "model", "version", "input", "output", "data_removed", "error", "status", "created_at", "urls"],
    {
        "id": _STRING,
        "model": {**_STRING, "description": "owner/name"},
        "version": _STRING,
        "input": {"type": "object"},
        "output": {"description": "Any JSON value; files are signed gateway links"},
        "logs": _nullable(_STRING),
        "error": _nullable(_STRING),
        "status": {"enum": ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]},
        "created_at": _TIME,
        "started_at": _nullable(_TIME),
        "completed_at": _nullable(_TIME),
        "data_removed": {"type": "boolean"},
        "source": {"enum": ["web", "api"]},
        "deployment": _STRING,
        "webhook": _URI,
        "webhook_events_filter": _WEBHOOK_EVENTS,
        "metrics": {"type": "object"},
        "urls": _object(["get", "cancel", "web"], {"get": _URI, "cancel": _URI, "web": _URI, "stream": _URI}),
    },
)

_VERSION: Json = _object(
    ["id", "created_at", "cog_version", "openapi_schema"],
    {"id": _STRING, "created_at": _TIME, "cog_version": _STRING, "openapi_schema": {"type": "object"}},
)

_MODEL: Json = _object(
    ["url", "owner", "name", "visibility", "run_count", "latest_version"],
    {
        "url": _URI,
        "owner": _STRING,
        "name": _STRING,
        "description": _nullable(_STRING),
        "visibility": {"enum": ["public", "private"]},
        "github_url": _nullable(_URI),
        "paper_url": _nullable(_URI),
        "license_url": _nullable(_URI),
        "run_count": {"type": "integer"},
        "cover_image_url": _nullable(_URI),
        "default_example": _nullable({"$ref": "#/components/schemas/Prediction"}),
        "latest_version": _nullable({"$ref": "#/components/schemas/Version"}),
        "is_official": {"type": "boolean"},
    },
)

_FILE: Json = _object(
    ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"],
    {
        "id": _STRING,
        "name": _STRING,
        "content_type": _STRING,
        "size": {"type": "integer", "minimum": 0},
        "etag": _STRING,
        "checksums": _object(["sha256", "md5"], {"sha256": _STRING, "md5": _STRING}),
        "metadata": {"type": "object"},
        "created_at": _TIME,
        "expires_at": _TIME,
        "urls": _object(["get"], {"get": _URI}),
    },
)

_FILE_CREATE: Json = _object(
    ["content"],
    {
        "content": {"type": "string", "format": "binary", "description": "The file; its part's filename and type are used"},
        "filename": {**_STRING, "description": "At most 255 bytes; else the part's filename"},
        "type": {**_STRING, "description": "A MIME type, used when the part's own is the generic default"},
        "metadata": {**_STRING, "description": "A JSON object"},
    },
)

_TENANT_NAME: Json = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.@-]+$"}
_KEY_FIELDS: Json = {
    "tenant": _TENANT_NAME,
    "name": {"type": "string", "maxLength": 256},
    "expires_at": _nullable({"type": "number", "description": "Unix seconds"}),
    "disabled": {"type": "boolean"},
    "scopes": {"type": "array", "items": {"enum": ["predict", "read"]}},
    "models": {
        "type": "array",
        "items": {**_STRING, "description": "`*`, `owner/name` or `owner/name:version`; `*` wildcards allowed"},
    },
}

_VIEW = _nullable({"type": "object"})
_AUDIT_ENTRY: Json = _object(
    ["id", "time", "action", "subject", "tenants", "actor", "request_id", "before", "after"],
    {
        "id": _STRING,
        "time": _TIME,
        "action": _STRING,
        "subject": _object(["kind", "id"], {"kind": _STRING, "id": _STRING}),
        "tenants": {"type": "array", "items": _STRING},
        "actor": _object(["kind", "source"], {"kind": _STRING, "source": _STRING}),
        "request_id": _STRING,
        "before": _VIEW,
        "after": _VIEW,
    },
)

_KEY: Json = _object(
    ["key_id", "tenant", "name", "created_at", "expires_at", "disabled", "scopes", "models", "token_hint"],
    {
        **_KEY_FIELDS,
        "key_id": _STRING,
        "created_at": {"type": "number"},
        "previous_valid_until": _nullable({"type": "number"}),
        "token_hint": _STRING,
    },
)

_PROBLEM: Json = _object(
    ["title", "detail", "status"],
    {
        "title": _STRING,
        "detail": _STRING,
        "status": {"type": "integer"},
        "invalid_fields": {
            "type": "array",
            "items": _object(["type", "field", "description"], {"type": _STRING, "field": _STRING, "description": _STRING}),
        },
    },
)

SCHEMAS: Json = {
    "VersionPredictionRequest": _object(
        ["version", "input"],
        {"version": {**_STRING, "description": "A 64-hex version id or `owner/name:id`"}, **_PREDICTION_REQUEST},
        extra=False,
    ),
    "PredictionRequest": _object(["input"], _PREDICTION_REQUEST, extra=False),
    "Prediction": _PREDICTION,
    "PredictionPage": _page("Prediction"),
    "Version": _VERSION,
    "VersionPage": _page("Version"),
    "Model": _MODEL,
    "ModelPage": _page("Model"),
    "Account": _object(
        ["type", "username", "name"],
        {
            "type": {"enum": ["organization", "user"]},
            "username": _STRING,
            "name": _STRING,
            "github_url": _nullable(_URI),
            "avatar_url": _nullable(_URI),
        },
    ),
    "WebhookSecret": _object(["key"], {"key": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$"}}),
    "File": _FILE,
    "FilePage": _page("File"),
    "FileCreate": _FILE_CREATE,
    "Key": _KEY,
    "KeyWithToken": _object(["key", "token"], {"key": {"$ref": "#/components/schemas/Key"}, "token": _STRING}),
    "KeyList": _object(["results"], {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}),
    "KeyCreate": _object(["tenant"], _KEY_FIELDS, extra=False),
    "KeyUpdate": _object([], _KEY_FIELDS, extra=False),
    "KeyRotate": _object([], {"grace_seconds": {"type": "number", "minimum": 0, "maximum": 30 * 24 * 3600}}, extra=False),
    "AuditPage": _object(["next", "results"], {"next": _nullable(_URI), "results": {"type": "array", "items": _AUDIT_ENTRY}}),
    "Problem": _PROBLEM,
}

SECURITY_SCHEMES: Json = {
    "tenantKey": {"type": "http", "scheme": "bearer", "description": "A gateway key `gwk_…` (`Token` is accepted too)"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "The admin token (GATEWAY_ADMIN_TOKEN)"},
}
