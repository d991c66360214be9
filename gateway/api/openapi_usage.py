"""Usage and limits in the gateway's OpenAPI document: the admin's and a tenant's operations, and their shapes."""

from __future__ import annotations

from gateway.api.openapi_parts import (
    ADMIN,
    TENANT,
    Json,
    json_body,
    json_response,
    nullable,
    object_schema,
    operation,
    path_param,
    problems,
    query_param,
    ref,
)

_STRING: Json = {"type": "string"}
_MONEY: Json = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{9}$", "description": "An exact amount of the currency"}
_SECONDS: Json = {"type": "number", "minimum": 0}
_COUNT: Json = {"type": "integer", "minimum": 0}
_LIMIT: Json = nullable(_COUNT)


_MEASURES: Json = {
    "predictions": _COUNT,
    "succeeded": _COUNT,
    "failed": _COUNT,
    "canceled": _COUNT,
    "predict_time": _SECONDS,
    "total_time": _SECONDS,
    "outputs": _COUNT,
    "cost": _MONEY,
}
_DIMENSIONS: Json = {name: _STRING for name in ("period", "tenant", "key_id", "model", "version", "provider")}
_LIMITS: Json = object_schema(
    [],
    {
        "creates_per_minute": _LIMIT,
        "reads_per_minute": _LIMIT,
        "concurrent_predictions": _LIMIT,
        "budget": nullable(
            object_schema(
                ["amount", "period"],
                {"amount": {"type": ["string", "number"]}, "period": {"enum": ["day", "month"]}},
                extra=False,
            )
        ),
        "prepaid": {"type": "boolean"},
    },
    extra=False,
)
_STATE: Json = object_schema(
    ["concurrent", "balance", "spent", "spent_today", "spent_this_month", "remaining", "period_resets_at"],
    {
        "concurrent": _COUNT,
        "balance": nullable(_MONEY),
        "spent": _MONEY,
        "spent_today": _MONEY,
        "spent_this_month": _MONEY,
        "remaining": nullable(_MONEY),
        "period_resets_at": nullable({"type": "string", "format": "date-time"}),
    },
)
_ENTRY: Json = object_schema(
    ["scope", "id", "tenant", "limits", "state"],
    {"scope": {"enum": ["tenant", "key"]}, "id": _STRING, "tenant": _STRING, "limits": ref("Limits"), "state": _STATE},
)

SCHEMAS: Json = {
    "UsageReport": object_schema(
        ["currency", "since", "until", "group_by", "results", "totals"],
        {
            "currency": _STRING,
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "group_by": {"type": "array", "items": _STRING},
            "results": {"type": "array", "items": object_schema(list(_MEASURES), {**_DIMENSIONS, **_MEASURES})},
            "totals": object_schema(list(_MEASURES), _MEASURES),
        },
    ),
    "UsageRows": object_schema(["results"], {"results": {"type": "array", "items": {"type": "object"}}}),
    "Limits": _LIMITS,
    "LimitsEntry": _ENTRY,
    "LimitsList": object_schema(["results"], {"results": {"type": "array", "items": ref("LimitsEntry")}}),
    "BalanceChange": object_schema(["amount"], {"amount": {"type": ["string", "number"]}}, extra=False),
}

_REPORT_QUERY = [
    query_param("key_id", _STRING, "Only this key's usage"),
    query_param("model", _STRING, "Only this model's usage (`owner/name`)"),
    query_param("since", {"type": "string", "format": "date-time"}, "From this hour (default: 30 days before until)"),
    query_param("until", {"type": "string", "format": "date-time"}, "Up to this hour, exclusive (default: now)"),
    query_param("group_by", _STRING, "Comma-separated: hour or day, tenant, key, model, version, provider"),
    query_param("format", {"enum": ["json", "csv"]}, "json (default) or csv (also chosen by `Accept: text/csv`)"),
]
_REPORT = {
    "description": "Usage",
    "content": {"application/json": {"schema": ref("UsageReport")}, "text/csv": {"schema": _STRING}},
}


def tenant_paths() -> Json:
    """A tenant's own usage and limits, relative to an API prefix."""
    return {
        "/usage": {
            "get": operation(
                "usage.get",
                "The tenant's own usage (any of its keys)",
                TENANT,
                {"200": _REPORT, **problems(400, 401, 403, 429)},
                parameters=_REPORT_QUERY,
            )
        },
        "/limits": {
            "get": operation(
                "limits.get",
                "The limits that apply to the caller's tenant and key, and their state",
                TENANT,
                {"200": json_response("Limits", ref("LimitsList")), **problems(401, 403, 429)},
            )
        },
    }


def _scope_paths(collection: str, param: str, who: str) -> Json:
    """Limits and balance of a tenant or a key: `/admin/v1/{collection}/{param}/…`."""
    parameters = [path_param(param)]
    entry = json_response("The scope's limits and state", ref("LimitsEntry"))
    changed = {"200": entry, **problems(400, 401, 404, 413, 422)}
    base = f"/admin/v1/{collection}/{{{param}}}"
    return {
        f"{base}/limits": {
            "put": operation(
                f"admin.{collection}.limits.set",
                f"Replace the limits of {who}",
                ADMIN,
                changed,
                parameters=parameters,
                requestBody=json_body(ref("Limits")),
            ),
            "delete": operation(
                f"admin.{collection}.limits.remove",
                f"Remove the limits of {who}",
                ADMIN,
                {"200": entry, **problems(401, 404)},
                parameters=parameters,
            ),
        },
        f"{base}/balance": {
            "post": operation(
                f"admin.{collection}.balance.add",
                f"Add to (or, negative, take from) the prepaid balance of {who}",
                ADMIN,
                changed,
                parameters=parameters,
                requestBody=json_body(ref("BalanceChange")),
            )
        },
    }


def admin_paths() -> Json:
    return {
        "/admin/v1/usage": {
            "get": operation(
                "admin.usage.get",
                "Usage, filtered and grouped",
                ADMIN,
                {"200": _REPORT, **problems(400, 401)},
                parameters=[query_param("tenant", _STRING, "Only this tenant's usage"), *_REPORT_QUERY],
            )
        },
        "/admin/v1/usage/rows": {
            "get": operation(
                "admin.usage.rows",
                "One tenant's per-prediction usage rows, oldest first",
                ADMIN,
                {"200": json_response("Rows", ref("UsageRows")), **problems(400, 401)},
                parameters=[
                    query_param("tenant", _STRING, "The tenant (required)"),
                    query_param("since", {"type": "string", "format": "date-time"}, "From"),
                    query_param("until", {"type": "string", "format": "date-time"}, "Up to, exclusive"),
                    query_param("limit", _STRING, "At most this many rows (1 to 10000, default 1000)"),
                ],
            )
        },
        "/admin/v1/limits": {
            "get": operation(
                "admin.limits.list",
                "Limits and their state of every tenant and key (or one tenant's)",
                ADMIN,
                {"200": json_response("Limits", ref("LimitsList")), **problems(401)},
                parameters=[query_param("tenant", _STRING, "Only this tenant")],
            )
        },
        **_scope_paths("tenants", "tenant", "a tenant"),
        **_scope_paths("keys", "key_id", "a key"),
    }
