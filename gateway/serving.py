"""The HTTP server the gateway runs in: uvicorn's server with a draining shutdown, and its httptools protocol
with a deadline on request headers.

uvicorn bounds only the idle time between requests; a client that opens a connection and sends half a
request line or half its headers would hold the connection for ever (slowloris). Here every connection, and
every request on it, must deliver its headers within `header_timeout` seconds or is closed.

uvicorn's own shutdown stops accepting and waits for open requests before the app hears of it (the lifespan
ends last), so a request waiting for a prediction would hold it up to a minute, then be cut. Here the app's
`Draining` starts first: waits and streams are answered at once, and the wait for the rest is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import Settings
from gateway.draining import Draining

# Of a shutdown's time, what is kept for the app's own teardown after the last request (its background work
# was handed back when draining started; model servers stop on their own bound).
_TEARDOWN_RESERVE_SECONDS = 3.0


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown (SIGTERM, SIGINT) starts the app's draining, keeps accepting for
    `accept_seconds` (readiness fails meanwhile), then stops accepting and gives open requests what is left of
    `shutdown_seconds`, less a reserve for the teardown; requests still open then are cancelled."""

    def __init__(self, config: uvicorn.Config, draining: Draining, shutdown_seconds: float, accept_seconds: float) -> None:
        super().__init__(config)
        self._draining = draining
        self._shutdown_seconds = shutdown_seconds
        self._accept_seconds = accept_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        began = time.monotonic()
        self._draining.start()
        await asyncio.sleep(self._accept_seconds)
        left = self._shutdown_seconds - (time.monotonic() - began)
        self.config.timeout_graceful_shutdown = max(math.floor(left - min(_TEARDOWN_RESERVE_SECONDS, left / 2)), 1)
        await super().shutdown(sockets)


def gateway_server(app: Starlette, settings: Settings) -> DrainingServer:
    """The server for the gateway's app (made by `create_app`) as `settings` configure it."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,  # the gateway's own (`api/timing`) has the duration and the request's fields
        timeout_keep_alive=settings.keep_alive_seconds,
        http=http_protocol(settings.header_timeout_seconds, app.state.draining),
    )
    return DrainingServer(config, app.state.draining, settings.shutdown_seconds, settings.shutdown_accept_seconds)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Also, once draining has started, every response closes its connection (`Connection: close`): a client
    sends its next request on a new connection, never on one the server is about to close under it."""

    def __init__(self, *args: Any, header_timeout: float, draining: Draining, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._draining = draining
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
        if self._draining.started and self.cycle is not None:
            self.cycle.keep_alive = False

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


def http_protocol(header_timeout: float, draining: Draining) -> type[HeaderDeadlineProtocol]:
    """The protocol class to hand uvicorn (`http=`), with the deadline and the app's draining bound in."""
    bound = functools.partialmethod(HeaderDeadlineProtocol.__init__, header_timeout=header_timeout, draining=draining)
    return type("HeaderDeadlineHttpProtocol", (HeaderDeadlineProtocol,), {"__init__": bound})
