"""Usage reports and limits over HTTP: the admin's `/admin/v1/usage`, `/admin/v1/limits`, limit and balance
changes; a tenant's own `/v1/usage` and `/v1/limits` with its key."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.admin import actor_of, authorize, instant, parse_body
from gateway.api.requests import caller, services
from gateway.api.responses import JSONResponse
from gateway.errors import BadRequest
from gateway.keys import KeyRecord
from gateway.limits import Limits
from gateway.usage import UsageQuery, parse_groups, report_csv

_CSV = "text/csv; charset=utf-8"
_MAX_ROWS = 10_000


class BalanceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(decimal_places=9, max_digits=19)


async def admin_usage(request: Request) -> Response:
    """Usage filtered by `tenant`, `key_id`, `model`, `since`/`until` and grouped by `group_by`."""
    authorize(request)
    query = request.query_params
    tenant = query.get("tenant")
    return await _report(request, [tenant] if tenant else None)


async def tenant_usage(request: Request) -> Response:
    """The caller's tenant's own usage (any of its keys), with the admin report's filters but `tenant`."""
    key = await caller(request, "read")
    return await _report(request, [key.tenant])


async def admin_usage_rows(request: Request) -> Response:
    """Per-prediction usage rows of one `tenant`, oldest first, for audit (`since`, `until`, `limit`)."""
    authorize(request)
    query = request.query_params
    tenant = query.get("tenant")
    if not tenant:
        raise BadRequest("tenant is required")
    since, until = instant(query, "since") or 0.0, instant(query, "until") or time.time() + 1
    limit = query.get("limit", "1000")
    if not limit.isdigit() or not 1 <= int(limit) <= _MAX_ROWS:
        raise BadRequest(f"limit must be a whole number from 1 to {_MAX_ROWS}")
    rows = await services(request).usage.rows(tenant, since, until, int(limit))
    return JSONResponse({"results": rows})


async def _report(request: Request, tenants: Sequence[str] | None) -> Response:
    query = request.query_params
    report = await services(request).usage.report(
        UsageQuery(
            tenants=tenants,
            key_id=query.get("key_id") or None,
            model=query.get("model") or None,
            since=instant(query, "since"),
            until=instant(query, "until"),
            group_by=parse_groups(query.get("group_by")),
        )
    )
    if _wants_csv(query, request.headers.get("accept", "")):
        return Response(report_csv(report), media_type=_CSV)
    return JSONResponse(report)


def _wants_csv(query: Mapping[str, str], accept: str) -> bool:
    given = query.get("format")
    if given not in (None, "json", "csv"):
        raise BadRequest("format must be json or csv")
    return given == "csv" or (given is None and accept.split(",")[0].strip().startswith("text/csv"))


async def admin_limits(request: Request) -> Response:
    """Limits and their state for every tenant with keys (or only `tenant`), each tenant then its keys."""
    authorize(request)
    found, tenant = services(request), request.query_params.get("tenant") or None
    results = await found.limits.report_keys(await found.keys.list(tenant), tenant)
    return JSONResponse({"results": results})


async def tenant_limits(request: Request) -> Response:
    """The limits that apply to the caller: its tenant's and its key's."""
    key = await caller(request, "read")
    return JSONResponse({"results": await services(request).limits.report(key.tenant, [key.key_id])})


async def set_tenant_limits(request: Request) -> Response:
    authorize(request)
    tenant = request.path_params["tenant"]
    limits = await parse_body(request, Limits)
    await services(request).limits.set_limits(tenant, None, limits, actor=actor_of(request))
    return await _scope_state(request, tenant, None)


async def set_key_limits(request: Request) -> Response:
    authorize(request)
    key = await _key(request)
    limits = await parse_body(request, Limits)
    await services(request).limits.set_limits(key.tenant, key.key_id, limits, actor=actor_of(request))
    return await _scope_state(request, key.tenant, key.key_id)


async def remove_tenant_limits(request: Request) -> Response:
    authorize(request)
    tenant = request.path_params["tenant"]
    await services(request).limits.set_limits(tenant, None, None, actor=actor_of(request))
    return await _scope_state(request, tenant, None)


async def remove_key_limits(request: Request) -> Response:
    authorize(request)
    key = await _key(request)
    await services(request).limits.set_limits(key.tenant, key.key_id, None, actor=actor_of(request))
    return await _scope_state(request, key.tenant, key.key_id)


async def add_tenant_balance(request: Request) -> Response:
    authorize(request)
    tenant = request.path_params["tenant"]
    change = await parse_body(request, BalanceChange)
    await services(request).limits.add_balance(tenant, None, change.amount, actor=actor_of(request))
    return await _scope_state(request, tenant, None)


async def add_key_balance(request: Request) -> Response:
    authorize(request)
    key = await _key(request)
    change = await parse_body(request, BalanceChange)
    await services(request).limits.add_balance(key.tenant, key.key_id, change.amount, actor=actor_of(request))
    return await _scope_state(request, key.tenant, key.key_id)


async def _key(request: Request) -> KeyRecord:
    return await services(request).keys.get(request.path_params["key_id"])


async def _scope_state(request: Request, tenant: str, key_id: str | None) -> Response:
    entries = await services(request).limits.report(tenant, [key_id] if key_id else [])
    return JSONResponse(entries[-1])


admin_routes = [
    Route("/usage", admin_usage, methods=["GET"]),
    Route("/usage/rows", admin_usage_rows, methods=["GET"]),
    Route("/limits", admin_limits, methods=["GET"]),
    Route("/tenants/{tenant}/limits", set_tenant_limits, methods=["PUT"]),
    Route("/tenants/{tenant}/limits", remove_tenant_limits, methods=["DELETE"]),
    Route("/tenants/{tenant}/balance", add_tenant_balance, methods=["POST"]),
    Route("/keys/{key_id}/limits", set_key_limits, methods=["PUT"]),
    Route("/keys/{key_id}/limits", remove_key_limits, methods=["DELETE"]),
    Route("/keys/{key_id}/balance", add_key_balance, methods=["POST"]),
]
routes = [
    Route("/usage", tenant_usage, methods=["GET"]),
    Route("/limits", tenant_limits, methods=["GET"]),
]
