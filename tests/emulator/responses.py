"""Answers the emulated API shares between its resources: problem+json, addresses, cursor pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.emulator.controls import EmulatorControls
from tests.emulator.predictions import WEBHOOK_EVENTS, Prediction, PredictionStore
from tests.emulator.validation import Issue, issues_detail


def problem(status: int, detail: str, title: str, **extra: Any) -> JSONResponse:
    """An `application/problem+json` error response."""
    body = {"title": title, "detail": detail, "status": status, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def validation_problem(issues: list[Issue]) -> JSONResponse:
    return problem(422, issues_detail(issues), "Input validation failed", invalid_fields=issues)


def not_found() -> JSONResponse:
    return problem(404, "Not found.", "Not found")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def host_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def api_base(request: Request, controls: EmulatorControls) -> str:
    return host_url(request) + controls.prefix


def event_filter(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        return frozenset(WEBHOOK_EVENTS)
    return frozenset(event for event in value if event in WEBHOOK_EVENTS)


def page(
    request: Request, controls: EmulatorControls, store: PredictionStore, path: str, item: Callable[[Prediction], Prediction]
) -> Response:
    """A newest-first page of the caller's account's objects in `store`, listed at `path` with opaque cursors."""
    cursor = _decode_cursor(request.query_params.get("cursor"))
    if cursor is None:
        return problem(404, "Invalid cursor", "Not found")
    older_than, newer_than = cursor
    account = controls.account(request.headers.get("authorization"))
    runs, has_newer, has_older = store.page(older_than, newer_than, controls.config.page_size, account)
    base = f"{api_base(request, controls)}{path}?cursor="
    return json_response(
        {
            "next": base + _encode_cursor("p", runs[-1].seq) if has_older else None,
            "previous": base + _encode_cursor("r", runs[0].seq) if has_newer else None,
            "results": [item(store.snapshot(run)) for run in runs],
        }
    )


def _encode_cursor(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}={seq}".encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[int | None, int | None] | None:
    """(older_than, newer_than) from an opaque cursor; None if it is malformed."""
    if cursor is None:
        return None, None
    try:
        kind, _, seq = base64.urlsafe_b64decode(cursor.encode()).decode().partition("=")
        position = int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if kind not in ("p", "r"):
        return None
    return (position, None) if kind == "p" else (None, position)
