"""`GET /admin/v1/providers` in the gateway's OpenAPI document: providers, credentials, routes and breakers."""

from __future__ import annotations

from gateway.api.openapi_parts import ADMIN, Json, json_response, nullable, object_schema, operation, problems, ref

_STRING: Json = {"type": "string"}
_TIME: Json = nullable({"type": "string", "format": "date-time"})
_COUNT: Json = {"type": "integer", "minimum": 0}

SCHEMAS: Json = {
    "ProviderList": object_schema(["providers"], {"providers": {"type": "array", "items": ref("Provider")}}),
    "Provider": object_schema(
        ["name", "kind", "usable", "credentials", "routes"],
        {
            "name": _STRING,
            "kind": {"type": "string", "enum": ["replicate", "cog"]},
            "usable": {"type": "boolean", "description": "false for a provider without credentials: its routes are skipped"},
            "credentials": {"type": "array", "items": ref("ProviderCredential")},
            "routes": {"type": "array", "items": ref("ProviderRoute")},
        },
    ),
    "ProviderCredential": object_schema(
        ["fingerprint", "env", "state", "cooling_until", "rate_limited_total"],
        {
            "fingerprint": {"type": "string", "description": "the first 12 hex digits of the token's SHA-256"},
            "env": nullable(_STRING),
            "state": {"type": "string", "enum": ["available", "cooling"]},
            "cooling_until": _TIME,
            "rate_limited_total": _COUNT,
        },
    ),
    "ProviderRoute": object_schema(
        ["route", "models", "breaker"],
        {
            "route": {"type": "string", "description": "`provider:kind:target`"},
            "models": {"type": "array", "items": _STRING},
            "breaker": object_schema(
                ["state", "failures", "opened_at", "retry_at", "last_failure", "last_failure_at"],
                {
                    "state": {"type": "string", "enum": ["closed", "half_open", "open"]},
                    "failures": _COUNT,
                    "opened_at": _TIME,
                    "retry_at": _TIME,
                    "last_failure": nullable(_STRING),
                    "last_failure_at": _TIME,
                },
            ),
        },
    ),
}


def admin_paths() -> Json:
    return {
        "/admin/v1/providers": {
            "get": operation(
                "admin.providers.list",
                "Upstream providers: credentials (cooling after a 429) and routes with their circuit breakers",
                ADMIN,
                {"200": json_response("Providers", ref("ProviderList")), **problems(401)},
            )
        }
    }
