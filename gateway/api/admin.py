"""The admin API under /admin/v1: tenant key management and the audit log, guarded by the admin token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.problems import invalid_body
from gateway.api.requests import json_object, origin, services
from gateway.api.responses import JSONResponse
from gateway.audit import MAX_PAGE_SIZE, Actor, AuditQuery, Subject, new_request_id
from gateway.errors import BadRequest, Unauthenticated
from gateway.keys import KeyRecord, KeySpec, NewKeySpec, Token
from gateway.signing import same_text
from gateway.timestamps import parse_timestamp

_AUDIT_FILTERS = ("key_id", "tenant", "action", "since", "until", "limit")


class RotateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float = Field(default=0, ge=0, le=30 * 24 * 3600)


_Spec = TypeVar("_Spec", bound=BaseModel)


def authorize(request: Request) -> None:
    expected = services(request).settings.admin_token
    if expected is None:
        raise Unauthenticated("The admin API is disabled: no admin token is configured")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "token") or not same_text(expected.get_secret_value(), given.strip()):
        raise Unauthenticated("You did not pass a valid admin token")


def actor_of(request: Request) -> Actor:
    """The admin token's holder, by client address, for the audit log."""
    address = request.client.host if request.client else "unknown"
    return Actor("admin-token", address, getattr(request.state, "request_id", None) or new_request_id())


async def parse_body(request: Request, model: type[_Spec]) -> _Spec:
    try:
        return model.model_validate(await json_object(request, required=model is not RotateSpec))
    except ValidationError as exc:
        raise invalid_body(exc) from None


def _with_token(record: KeyRecord, token: Token, status: int) -> Response:
    return JSONResponse({"key": record.public(), "token": str(token)}, status_code=status)


async def create_key(request: Request) -> Response:
    authorize(request)
    record, token = await services(request).keys.create(await parse_body(request, NewKeySpec), actor=actor_of(request))
    return _with_token(record, token, 201)


async def list_keys(request: Request) -> Response:
    authorize(request)
    records = await services(request).keys.list(request.query_params.get("tenant"))
    return JSONResponse({"results": [r.public() for r in records]})


async def get_key(request: Request) -> Response:
    authorize(request)
    return JSONResponse((await services(request).keys.get(request.path_params["key_id"])).public())


async def update_key(request: Request) -> Response:
    authorize(request)
    spec = await parse_body(request, KeySpec)
    record = await services(request).keys.update(request.path_params["key_id"], spec, actor=actor_of(request))
    return JSONResponse(record.public())


async def disable_key(request: Request) -> Response:
    authorize(request)
    record = await services(request).keys.disable(request.path_params["key_id"], actor=actor_of(request))
    return JSONResponse(record.public())


async def delete_key(request: Request) -> Response:
    authorize(request)
    await services(request).keys.delete(request.path_params["key_id"], actor=actor_of(request))
    return Response(status_code=204)


async def rotate_key(request: Request) -> Response:
    authorize(request)
    spec = await parse_body(request, RotateSpec)
    key_id = request.path_params["key_id"]
    record, token = await services(request).keys.rotate(key_id, spec.grace_seconds, actor=actor_of(request))
    return _with_token(record, token, 200)


async def list_audit(request: Request) -> Response:
    """Audit entries newest first, filtered by `key_id`, `tenant`, `action`, `since`/`until` (ISO 8601), `limit`."""
    authorize(request)
    query = request.query_params
    page = await services(request).audit.read(
        AuditQuery(
            subject=Subject("key", query["key_id"]) if query.get("key_id") else None,
            tenant=query.get("tenant") or None,
            action=query.get("action") or None,
            since=instant(query, "since"),
            until=instant(query, "until"),
            limit=_limit(query.get("limit")),
            cursor=query.get("cursor") or None,
        )
    )
    kept = {name: query[name] for name in _AUDIT_FILTERS if query.get(name)}
    following = f"{origin(request)}/admin/v1/audit?{urlencode({**kept, 'cursor': page.next_cursor})}"
    return JSONResponse({"next": following if page.next_cursor else None, "results": page.results})


def instant(query: Mapping[str, str], name: str) -> float | None:
    value = query.get(name)
    instant = parse_timestamp(value)
    if value and instant is None:
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z")
    return instant


def _limit(value: str | None) -> int:
    if value is None:
        return 100
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(value)


routes = [
    Route("/keys", create_key, methods=["POST"]),
    Route("/keys", list_keys, methods=["GET"]),
    Route("/keys/{key_id}", get_key, methods=["GET"]),
    Route("/keys/{key_id}", update_key, methods=["PATCH"]),
    Route("/keys/{key_id}", delete_key, methods=["DELETE"]),
    Route("/keys/{key_id}/disable", disable_key, methods=["POST"]),
    Route("/keys/{key_id}/rotate", rotate_key, methods=["POST"]),
    Route("/audit", list_audit, methods=["GET"]),
]
