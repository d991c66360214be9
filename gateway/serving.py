"""The HTTP server the gateway runs in: uvicorn's httptools protocol with a deadline on request headers.

uvicorn bounds only the idle time between requests; a client that opens a connection and sends half a
request line or half its headers would hold the connection for ever (slowloris). Here every connection, and
every request on it, must deliver its headers within `header_timeout` seconds or is closed.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to hand uvicorn (`http=`), with the deadline bound in."""
    bound = functools.partialmethod(HeaderDeadlineProtocol.__init__, header_timeout=header_timeout)
    return type("HeaderDeadlineHttpProtocol", (HeaderDeadlineProtocol,), {"__init__": bound})
