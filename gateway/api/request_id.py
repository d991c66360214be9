"""Pure ASGI middleware giving every request an id: the client's `X-Request-Id` when sane, else a new one.

The id is put in `request.state.request_id` (the audit log records it) and sent back as `X-Request-Id`; while the
request is served it is also the current one of `request_context`, which sends it upstream and puts it on every
log line.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import request_context
from gateway.audit import sane_request_id

HEADER = "x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with request_context.serving(request_id):
            await self.app(scope, receive, send_with_id)
