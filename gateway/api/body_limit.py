"""Pure ASGI middleware refusing request bodies over a size limit with 413 problem+json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.problems import problem_response
from gateway.errors import PayloadTooLarge


@dataclass(frozen=True)
class PathLimit:
    """Another limit, and its 413 detail, for requests whose path starts with `prefix` (file uploads)."""

    prefix: str
    max_bytes: int
    detail: str


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Sequence[PathLimit] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = tuple(path_limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, detail = self._limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            await problem_response(PayloadTooLarge(detail))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:  # a chunked body that outgrew the limit
                raise PayloadTooLarge(detail)
            return message

        await self.app(scope, limited_receive, send)

    def _limit(self, path: str) -> tuple[int, str]:
        for limit in self.path_limits:
            if path.startswith(limit.prefix):
                return limit.max_bytes, limit.detail
        return self.max_bytes, f"Request bodies must be at most {self.max_bytes} bytes"
