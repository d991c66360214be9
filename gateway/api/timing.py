"""Pure ASGI middleware recording every request's route template, method, status and duration in the metrics."""

from __future__ import annotations

import time

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics

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
            method = scope["method"] if scope["method"] in _METHODS else "other"  # any token is a valid method
            self.metrics.request(route_template(scope), method, status, time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's path template under its mounts (`/v1/predictions/{prediction_id}`); every path no
    route matches shares one label, so requests for made-up paths add no series."""
    route = scope.get("route")  # the innermost router to match sets it; mounts add to root_path
    if not isinstance(route, Route):
        return UNMATCHED
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return f"{mounted}{route.path_format}"
