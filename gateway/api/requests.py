"""Request helpers shared by the endpoints: JSON bodies, the caller's key, absolute URLs."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway import request_context
from gateway.errors import BadRequest
from gateway.keys import KeyRecord, Scope
from gateway.limits import ReadCount
from gateway.services import Services


def services(request: Request) -> Services:
    return request.state.services  # type: ignore[no-any-return]


async def caller(request: Request, scope: Scope, *, counted: bool = True) -> KeyRecord:
    """The key the request authenticates with, holding `scope` (its id and tenant go on the request's log lines);
    the request counts as a read against the read rate limits here unless not `counted` (a create is checked, with
    everything else about it, when it is made; a `reader` counts with the read's own round trip)."""
    found = services(request)
    key = await found.auth.authenticate(request.headers.get("authorization"), scope)
    request_context.tag(key_id=key.key_id, tenant=key.tenant)
    if counted:
        await found.limits.check_read(key)
    return key


async def reader(request: Request) -> tuple[KeyRecord, ReadCount | None]:
    """The key of a read (scope `read`) and the read's count against the read rates, to send with the read's own
    store round trip (None when no read rate applies)."""
    key = await caller(request, "read", counted=False)
    return key, await services(request).limits.read_count(key)


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    return body


def origin(request: Request) -> str:
    """The gateway's public address, else the one this request came in on."""
    public = services(request).links.public_base
    return public or f"{request.url.scheme}://{request.url.netloc}"


def api_root(request: Request) -> str:
    """The absolute URL of the API prefix this request came in on (`…/v1` or `…/replicate/v1`)."""
    return origin(request) + str(request.scope.get("root_path", ""))


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON from a client: no NaN or Infinity, no number beyond a double, no lone surrogate, at most
    1,024 levels deep (as orjson reads it: failing with ValueError, never with a RecursionError)."""
    return orjson.loads(raw)
