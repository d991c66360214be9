"""Every gateway error as the OpenAI-compatible routes answer it: status, type, code and the request field at fault."""

import orjson
import pytest

from gateway.api.openai_errors import OpenAIError, openai_error
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    InvalidInput,
    InvalidVersion,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    StoreError,
    TooManyRequests,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def _invalid(field: str) -> InvalidInput:
    return InvalidInput([{"type": "invalid", "field": field, "description": "bad"}])


@pytest.mark.parametrize(
    "error,expected",
    [
        (OpenAIError("bad n", "n", "invalid_value"), (400, "invalid_request_error", "n", "invalid_value")),
        (BadRequest("not JSON"), (400, "invalid_request_error", None, None)),
        (_invalid("input.width"), (400, "invalid_request_error", "size", "invalid_value")),
        (_invalid("input.num_outputs"), (400, "invalid_request_error", "n", "invalid_value")),
        (_invalid("input.mask"), (400, "invalid_request_error", "mask", "invalid_value")),
        (_invalid("input.seed"), (400, "invalid_request_error", None, "invalid_value")),
        (Unauthenticated(), (401, "invalid_request_error", None, "invalid_api_key")),
        (Forbidden("scope"), (403, "invalid_request_error", None, "permission_denied")),
        (NotFound("none"), (404, "invalid_request_error", None, "not_found")),
        (InvalidVersion(), (404, "invalid_request_error", "model", "model_not_found")),
        (PayloadTooLarge("big"), (413, "invalid_request_error", None, None)),
        (
            PaymentRequired("broke", limit=0, remaining=0, reset_seconds=None),
            (402, "insufficient_quota", None, "insufficient_quota"),
        ),
        (TooManyRequests("slow", limit=1, remaining=0, reset_seconds=7), (429, "requests", None, "rate_limit_exceeded")),
        (UpstreamError("failed"), (502, "server_error", None, None)),
        (UpstreamUnavailable("down"), (503, "server_error", None, None)),
        (UpstreamTimeout("slow"), (504, "server_error", None, None)),
        (StoreError("down"), (503, "server_error", None, None)),
    ],
)
def test_each_error_has_its_openai_status_type_param_and_code(
    error: GatewayError, expected: tuple[int, str, str | None, str | None]
) -> None:
    response = openai_error(error)
    body = orjson.loads(response.body)["error"]
    assert (response.status_code, body["type"], body["param"], body["code"]) == expected
    assert body["message"] == error.detail


def test_a_rate_limit_keeps_its_headers() -> None:
    response = openai_error(TooManyRequests("slow", limit=1, remaining=0, reset_seconds=7))
    assert response.headers["retry-after"] == "7" and response.headers["ratelimit-limit"] == "1"
