"""Pure ASGI middleware recording every request's endpoint, status and duration in the metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics


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
            # The router puts the matched endpoint into the scope; unmatched paths share one label.
            endpoint = getattr(scope.get("endpoint"), "__name__", "unmatched")
            self.metrics.request(endpoint, scope["method"], status, time.perf_counter() - start)
