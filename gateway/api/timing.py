"""Pure ASGI middleware recording every request's route template, method, status and duration in the metrics,
and logging it on `gateway.access` (with its path, redacted like every log line, and the request's fields)."""

from __future__ import annotations

import logging
import time

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics

access_log = logging.getLogger("gateway.access")
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TimingMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds, template = time.perf_counter() - start, route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"  # any token is a valid method
            self.metrics.request(template, method, status, seconds)
            _log_access(scope, template, status, seconds)


def _log_access(scope: Scope, template: str, status: int, seconds: float) -> None:
    query = scope["query_string"].decode("latin-1")
    path = f"{scope['path']}?{query}" if query else scope["path"]
    client = scope["client"][0] if scope.get("client") else "-"
    fields = {"method": scope["method"], "path": path, "path_template": template, "status": status, "client": client}
    access_log.info(
        '%s "%s %s" %d %.1f ms', client, scope["method"], path, status, seconds * 1000,
        extra={**fields, "duration_ms": round(seconds * 1000, 1)},
    )  # fmt: skip


def route_template(scope: Scope) -> str:
    """The matched route's path template under its mounts (`/v1/predictions/{prediction_id}`); every path no
    route matches shares one label, so requests for made-up paths add no series."""
    route = scope.get("route")  # the innermost router to match sets it; mounts add to root_path
    if not isinstance(route, Route):
        return UNMATCHED
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return f"{mounted}{route.path_format}"
