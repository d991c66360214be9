"""problem+json responses and the one exception-handler table that produces them."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.responses import JSONResponse
from gateway.errors import GatewayError, InvalidInput

logger = logging.getLogger(__name__)

_HTTP_DETAILS = {
    404: ("Not found", "The requested resource does not exist"),
    405: ("Method not allowed", "This method is not allowed on this resource"),
}


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem_response(error: GatewayError) -> ProblemResponse:
    return ProblemResponse(error.problem(), status_code=error.status, headers=error.headers())


def invalid_body(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """A pydantic error on a request body, as Replicate-style invalid_fields."""
    fields = []
    for error in exc.errors():
        field = ".".join([prefix, *(str(p) for p in error["loc"])]).strip(".") or "(root)"
        fields.append({"type": error["type"], "field": field, "description": error["msg"].removeprefix("Value error, ")})
    return InvalidInput(fields, title="Invalid request body")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
    return problem_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title, detail = _HTTP_DETAILS.get(exc.status_code, ("Error", str(exc.detail)))
    body: dict[str, Any] = {"title": title, "detail": detail, "status": exc.status_code}
    return ProblemResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {
        "title": "Internal server error",
        "detail": "The gateway failed unexpectedly; the error has been logged",
        "status": 500,
    }
    return ProblemResponse(body, status_code=500)


EXCEPTION_HANDLERS = {GatewayError: _gateway_error, HTTPException: _http_exception, Exception: _unexpected}
