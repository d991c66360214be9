"""Building blocks of the gateway's OpenAPI document: security requirements, responses, parameters."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

TENANT: list[Json] = [{"tenantKey": []}]
ADMIN: list[Json] = [{"adminToken": []}]
CAPABILITY: list[Json] = []  # the signed URL is the credential; any Authorization header is ignored
OPTIONAL_TENANT: list[Json] = [{"tenantKey": []}, {}]

_PROBLEM_TITLES = {
    400: "Bad request: the body is not a JSON object, or a parameter is malformed",
    401: "Unauthenticated: no valid token",
    402: "Payment required: the prepaid balance or the spending budget does not cover the estimated cost",
    403: "Forbidden: the key lacks the scope, or a signature is invalid or expired",
    404: "Not found",
    409: "Conflict: a request with the same `Idempotency-Key` is still in progress (see `Retry-After`)",
    413: "Payload too large",
    422: "Validation failed (`invalid_fields` names each problem), or an `Idempotency-Key` reused with another request",
    429: "Too many requests: a rate or concurrency limit (see `Retry-After` and the `ratelimit-*` headers)",
    502: "The upstream provider failed",
    503: "The upstream provider or the store is unavailable",
    504: "The upstream provider timed out",
}


def nullable(schema: Json) -> Json:
    return {"oneOf": [schema, {"type": "null"}]}


def object_schema(required: list[str], properties: Json, *, extra: bool = True) -> Json:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": extra}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def page(item: str) -> Json:
    """A page of a list: `results` of the named schema, and the absolute URLs of the pages on either side."""
    uri = {"type": "string", "format": "uri"}
    return object_schema(
        ["next", "previous", "results"],
        {"next": nullable(uri), "previous": nullable(uri), "results": {"type": "array", "items": ref(item)}},
    )


def json_response(status: str, schema: Json, headers: Json | None = None) -> Json:
    response: Json = {"description": status, "content": {"application/json": {"schema": schema}}}
    return {**response, "headers": headers} if headers else response


def problems(*codes: int) -> Json:
    return {
        str(code): {
            "description": _PROBLEM_TITLES[code],
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
        for code in codes
    }


def path_param(name: str, description: str = "") -> Json:
    parameter: Json = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    return {**parameter, "description": description} if description else parameter


def query_param(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def operation(operation_id: str, summary: str, security: list[Json], responses: Json, **extra: Any) -> Json:
    return {"operationId": operation_id, "summary": summary, "security": security, "responses": responses, **extra}


def json_body(schema: Json, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


UPSTREAM = (502, 503, 504)
BYTES = {"type": "string", "format": "binary"}
BINARY = {"description": "The file's bytes", "content": {"*/*": {"schema": BYTES}}}
