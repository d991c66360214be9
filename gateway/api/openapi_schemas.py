"""The components of the gateway's OpenAPI document: the wire shapes of its requests and responses, its security schemes."""

from __future__ import annotations

from gateway.api.openapi_parts import Json, nullable, object_schema, page

_STRING: Json = {"type": "string"}
_URI: Json = {"type": "string", "format": "uri"}
_TIME: Json = {"type": "string", "format": "date-time"}
_WEBHOOK_EVENTS: Json = {"type": "array", "items": {"enum": ["start", "output", "logs", "completed"]}}


_PREDICTION_REQUEST: Json = {
    "input": {"type": "object", "description": "The model's input; validated against the version's schema"},
    "webhook": {**_URI, "description": "An http(s) URL to POST the prediction to as it changes"},
    "webhook_events_filter": _WEBHOOK_EVENTS,
    "webhook_completed": {**_URI, "description": "Legacy: a webhook for the `completed` event only"},
    "stream": {"type": "boolean", "description": "Deprecated and ignored"},
}

_PREDICTION: Json = object_schema(
    ["id", "model", "version", "input", "output", "data_removed", "error", "status", "created_at", "urls"],
    {
        "id": _STRING,
        "model": {**_STRING, "description": "owner/name"},
        "version": _STRING,
        "input": {"type": "object"},
        "output": {"description": "Any JSON value; files are signed gateway links"},
        "logs": _STRING,
        "error": nullable(_STRING),
        "status": {"enum": ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]},
        "created_at": _TIME,
        # Keys without a value yet are left out, never null (as Replicate does): only `output` and `error` are.
        "started_at": _TIME,
        "completed_at": _TIME,
        "deadline": {**_TIME, "description": "When the prediction is canceled if unfinished (`Cancel-After`)"},
        "data_removed": {"type": "boolean"},
        "source": {"enum": ["web", "api"]},
        "deployment": _STRING,
        "webhook": _URI,
        "webhook_events_filter": _WEBHOOK_EVENTS,
        "metrics": {"type": "object", "properties": {"predict_time": {"type": "number"}, "total_time": {"type": "number"}}},
        "urls": object_schema(["get", "cancel", "web"], {"get": _URI, "cancel": _URI, "web": _URI, "stream": _URI}),
    },
)

_VERSION: Json = object_schema(
    ["id", "created_at", "cog_version", "openapi_schema"],
    {"id": _STRING, "created_at": _TIME, "cog_version": _STRING, "openapi_schema": {"type": "object"}},
)

_MODEL: Json = object_schema(
    ["url", "owner", "name", "visibility", "run_count", "latest_version"],
    {
        "url": _URI,
        "owner": _STRING,
        "name": _STRING,
        "description": _STRING,
        "visibility": {"enum": ["public", "private"]},
        "github_url": nullable(_URI),
        "paper_url": nullable(_URI),
        "license_url": nullable(_URI),
        "run_count": {"type": "integer"},
        "cover_image_url": nullable(_URI),
        "default_example": nullable({"$ref": "#/components/schemas/Prediction"}),
        "latest_version": nullable({"$ref": "#/components/schemas/Version"}),
        "is_official": {"type": "boolean"},
    },
)

_FILE: Json = object_schema(
    ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"],
    {
        "id": _STRING,
        "name": _STRING,
        "content_type": _STRING,
        "size": {"type": "integer", "minimum": 0},
        "etag": _STRING,
        "checksums": object_schema(["sha256", "md5"], {"sha256": _STRING, "md5": _STRING}),
        "metadata": {"type": "object"},
        "created_at": _TIME,
        "expires_at": _TIME,
        "urls": object_schema(["get"], {"get": _URI}),
    },
)

_FILE_CREATE: Json = object_schema(
    ["content"],
    {
        "content": {"type": "string", "format": "binary", "description": "The file; its part's filename and type are used"},
        "filename": {**_STRING, "description": "At most 255 bytes; else the part's filename"},
        "type": {**_STRING, "description": "A MIME type, used when the part's own is the generic default"},
        "metadata": {
            **_STRING,
            "description": "A JSON object (a field or an application/json part); or `metadata[key]` fields instead, "
            "nested with more brackets (`metadata[a][b]`, `metadata[list][]`), each value a string",
        },
    },
)

_TENANT_NAME: Json = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.@-]+$"}
_KEY_FIELDS: Json = {
    "tenant": _TENANT_NAME,
    "name": {"type": "string", "maxLength": 256},
    "expires_at": nullable({"type": "number", "description": "Unix seconds"}),
    "disabled": {"type": "boolean"},
    "scopes": {"type": "array", "items": {"enum": ["predict", "read"]}},
    "models": {
        "type": "array",
        "items": {**_STRING, "description": "`*`, `owner/name` or `owner/name:version`; `*` wildcards allowed"},
    },
}

_VIEW = nullable({"type": "object"})
_AUDIT_ENTRY: Json = object_schema(
    ["id", "time", "action", "subject", "tenants", "actor", "request_id", "before", "after"],
    {
        "id": _STRING,
        "time": _TIME,
        "action": _STRING,
        "subject": object_schema(["kind", "id"], {"kind": _STRING, "id": _STRING}),
        "tenants": {"type": "array", "items": _STRING},
        "actor": object_schema(["kind", "source"], {"kind": _STRING, "source": _STRING}),
        "request_id": _STRING,
        "before": _VIEW,
        "after": _VIEW,
    },
)

_KEY: Json = object_schema(
    ["key_id", "tenant", "name", "created_at", "expires_at", "disabled", "scopes", "models", "token_hint"],
    {
        **_KEY_FIELDS,
        "key_id": _STRING,
        "created_at": {"type": "number"},
        "previous_valid_until": nullable({"type": "number"}),
        "token_hint": _STRING,
    },
)

_PROBLEM: Json = object_schema(
    ["title", "detail", "status"],
    {
        "title": _STRING,
        "detail": _STRING,
        "status": {"type": "integer"},
        "invalid_fields": {
            "type": "array",
            "items": object_schema(["type", "field", "description"], {"type": _STRING, "field": _STRING, "description": _STRING}),
        },
    },
)

SCHEMAS: Json = {
    "VersionPredictionRequest": object_schema(
        ["version", "input"],
        {"version": {**_STRING, "description": "A 64-hex version id or `owner/name:id`"}, **_PREDICTION_REQUEST},
        extra=False,
    ),
    "PredictionRequest": object_schema(["input"], _PREDICTION_REQUEST, extra=False),
    "Prediction": _PREDICTION,
    "PredictionPage": page("Prediction"),
    "Version": _VERSION,
    "VersionPage": page("Version"),
    "Model": _MODEL,
    "ModelPage": page("Model"),
    "Account": object_schema(
        ["type", "username", "name"],
        {
            "type": {"enum": ["organization", "user"]},
            "username": _STRING,
            "name": _STRING,
            "github_url": _URI,
            "avatar_url": _URI,
        },
    ),
    "WebhookSecret": object_schema(["key"], {"key": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$"}}),
    "File": _FILE,
    "FilePage": page("File"),
    "FileCreate": _FILE_CREATE,
    "Key": _KEY,
    "KeyWithToken": object_schema(["key", "token"], {"key": {"$ref": "#/components/schemas/Key"}, "token": _STRING}),
    "KeyList": object_schema(["results"], {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}),
    "KeyCreate": object_schema(["tenant"], _KEY_FIELDS, extra=False),
    "KeyUpdate": object_schema([], _KEY_FIELDS, extra=False),
    "KeyRotate": object_schema([], {"grace_seconds": {"type": "number", "minimum": 0, "maximum": 30 * 24 * 3600}}, extra=False),
    "AuditPage": object_schema(
        ["next", "results"], {"next": nullable(_URI), "results": {"type": "array", "items": _AUDIT_ENTRY}}
    ),
    "Problem": _PROBLEM,
}

SECURITY_SCHEMES: Json = {
    "tenantKey": {"type": "http", "scheme": "bearer", "description": "A gateway key `gwk_…` (`Token` is accepted too)"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "The admin token (GATEWAY_ADMIN_TOKEN)"},
}
