"""OpenAI-shaped errors for the OpenAI-compatible routes: `{"error": {"message", "type", "param", "code"}}`.

The same gateway errors as elsewhere, with the statuses OpenAI's clients map to their exception classes:
input problems are 400 `invalid_request_error` naming the request field (`param`), limits keep their
429 or 402 and their headers, upstream and store failures are `server_error`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.responses import JSONResponse
from gateway.errors import GatewayError, InvalidInput, InvalidVersion

logger = logging.getLogger(__name__)

# Prediction input fields, as the request field they were made from.
_PARAMS = {"prompt": "prompt", "num_outputs": "n", "width": "size", "height": "size", "image": "image", "mask": "mask"}
# status -> (type, code) where OpenAI's own answers use a fixed pair
_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class OpenAIError(GatewayError):
    """A request problem found by the OpenAI-compatible layer itself, naming the request field at fault."""

    status = 400

    def __init__(self, message: str, param: str | None, code: str | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status


def error_response(
    status: int, message: str, kind: str, param: str | None, code: str | None, headers: dict[str, str]
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def openai_error(exc: GatewayError) -> Response:
    """The OpenAI-shaped answer to a gateway error."""
    if isinstance(exc, OpenAIError):
        return error_response(exc.status, exc.detail, "invalid_request_error", exc.param, exc.code, {})
    if isinstance(exc, InvalidVersion):  # the key may not use the model the request names
        return error_response(404, exc.detail, "invalid_request_error", "model", "model_not_found", {})
    if isinstance(exc, InvalidInput):
        field = exc.invalid_fields[0]["field"] if exc.invalid_fields else ""
        return error_response(400, exc.detail, "invalid_request_error", _param(field), "invalid_value", {})
    if exc.status >= 500:
        return error_response(exc.status, exc.detail, "server_error", None, None, exc.headers())
    kind, code = _KINDS.get(exc.status, ("invalid_request_error", None))
    return error_response(exc.status, exc.detail, kind, None, code, exc.headers())


async def answered(request: Request, endpoint: Callable[[Request], Awaitable[Response]]) -> Response:
    """The endpoint's response, or its error in OpenAI's shape (unexpected errors as a logged 500)."""
    try:
        return await endpoint(request)
    except GatewayError as exc:
        if exc.status >= 500:
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
        return openai_error(exc)
    except HTTPException as exc:  # a malformed multipart body
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", None, None, {})
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "The gateway failed unexpectedly; the error has been logged", "server_error", None, None, {})


def _param(field: str) -> str | None:
    """`input.width` -> `size`: the request field an invalid prediction input came from."""
    name = field.removeprefix("input.").split(".", 1)[0]
    return _PARAMS.get(name)
