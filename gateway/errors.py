"""The gateway's error hierarchy; only `api/` turns these into HTTP responses.

GatewayError (status, title, detail)
 ├── BadRequest                400
 ├── Unauthenticated           401
 ├── Forbidden                 403
 ├── NotFound                  404
 ├── RequestTimeout            408
 ├── Conflict                  409 (+ Retry-After)
 ├── PayloadTooLarge           413
 ├── InvalidInput              422 (+ invalid_fields)
 ├── InvalidVersion            422 "Invalid version or not permitted"
 ├── KeyReused                 422 an idempotency key sent with another request
 ├── OverLimit                 (+ Retry-After, RateLimit fields)
 │    ├── PaymentRequired      402
 │    └── TooManyRequests      429
 ├── UpstreamError             502 (+ delivery: how far the request got)
 │    ├── UpstreamUnavailable  503 (+ retry_after)
 │    └── UpstreamTimeout      504
 ├── StoreError                503 (Redis unreachable or failing)
 └── ShuttingDown              503 (the process is draining: readiness only)
ConfigError                    raised at start-up only, never over HTTP
"""

from __future__ import annotations

import enum
from typing import Any


class GatewayError(Exception):
    status: int = 500
    title: str = "Internal server error"

    def __init__(self, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title

    def problem(self) -> dict[str, Any]:
        """The RFC 7807 body, in Replicate's shape."""
        return {"title": self.title, "detail": self.detail, "status": self.status}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(GatewayError):
    status = 400
    title = "Bad request"


class Unauthenticated(GatewayError):
    status = 401
    title = "Unauthenticated"

    def __init__(self, detail: str = "You did not pass a valid authentication token") -> None:
        super().__init__(detail)


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"


class OverLimit(GatewayError):
    """A key's or tenant's limit refused the request; says which and when to try again (RateLimit header fields
    of draft-ietf-httpapi-ratelimit-headers, and Retry-After when waiting helps)."""

    def __init__(self, detail: str, *, limit: int, remaining: int, reset_seconds: int | None) -> None:
        super().__init__(detail)
        self.limit = limit
        self.remaining = remaining
        self.reset_seconds = reset_seconds

    def headers(self) -> dict[str, str]:
        headers = {"ratelimit-limit": str(self.limit), "ratelimit-remaining": str(self.remaining)}
        if self.reset_seconds is not None:
            headers["ratelimit-reset"] = str(self.reset_seconds)
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class PaymentRequired(OverLimit):
    status = 402
    title = "Payment required"


class TooManyRequests(OverLimit):
    status = 429
    title = "Too many requests"


class NotFound(GatewayError):
    status = 404
    title = "Not found"


class RequestTimeout(GatewayError):
    status = 408
    title = "Request timeout"


class Conflict(GatewayError):
    """The request collides with one still in progress; it may succeed if repeated after `retry_after` seconds."""

    status = 409
    title = "Conflict"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class KeyReused(GatewayError):
    status = 422
    title = "Idempotency key reused"

    def __init__(self, detail: str = "This Idempotency-Key was already used with a different request; use a new key") -> None:
        super().__init__(detail)


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Payload too large"


class InvalidInput(GatewayError):
    """422 with Replicate's `invalid_fields`: each {type, field, description}."""

    status = 422
    title = "Input validation failed"

    def __init__(self, invalid_fields: list[dict[str, str]], *, title: str | None = None) -> None:
        super().__init__(_describe(invalid_fields), title=title)
        self.invalid_fields = invalid_fields

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "invalid_fields": self.invalid_fields}


class InvalidVersion(GatewayError):
    status = 422
    title = "Invalid version or not permitted"

    def __init__(
        self,
        detail: str = "The specified version does not exist (or perhaps you don't have permission to use it?)",
    ) -> None:
        super().__init__(detail)


class Delivery(enum.Enum):
    """How far a failed upstream request got, which decides whether another route may take it over."""

    NOT_SENT = "not_sent"  # it never reached the upstream (no connection, no credentials)
    REFUSED = "refused"  # the upstream answered with an error: it did not take the request
    REJECTED = "rejected"  # the upstream refused the request itself: any other route would too
    UNKNOWN = "unknown"  # sent, with no usable answer (a timeout, a dropped connection): it may have been taken


class UpstreamError(GatewayError):
    status = 502
    title = "Bad gateway"

    def __init__(self, detail: str, *, delivery: Delivery = Delivery.UNKNOWN) -> None:
        super().__init__(detail)
        self.delivery = delivery


class UpstreamUnavailable(UpstreamError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int | None = None, delivery: Delivery = Delivery.REFUSED) -> None:
        super().__init__(detail, delivery=delivery)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class UpstreamTimeout(UpstreamError):
    status = 504
    title = "Gateway timeout"


class StoreError(GatewayError):
    status = 503
    title = "Service unavailable"


class ShuttingDown(GatewayError):
    status = 503
    title = "Service unavailable"


class ConfigError(Exception):
    """A bad setting or catalog entry; the message names the file, the field and the problem."""


def _describe(invalid_fields: list[dict[str, str]]) -> str:
    lines = []
    for item in invalid_fields:
        field = item["field"]
        prefix = "" if field in ("", "(root)") else f"{field}: "
        lines.append(f"- {prefix}{item['description']}\n")
    return "".join(lines)
