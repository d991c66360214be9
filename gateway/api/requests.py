"""Request helpers shared by the endpoints: JSON bodies, the caller's key, absolute URLs."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway.errors import BadRequest
from gateway.keys import KeyRecord, Scope
from gateway.services import Services


def services(request: Request) -> Services:
    return request.state.services  # type: ignore[no-any-return]


async def caller(request: Request, scope: Scope) -> KeyRecord:
    return await services(request).auth.authenticate(request.headers.get("authorization"), scope)


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("The request body is not valid JSON: it is nested too deeply") from None
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


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and Infinity; JSON has no such numbers, and no upstream would accept them."""
    raise ValueError(f"{constant} is not a JSON number")
