"""The pooled HTTP client adapters use to reach upstreams.

aiohttp carries the forwarding path: on this project's machine kind it forwarded 4,915 requests/s at 32
concurrent connections where httpx's default transport managed 209 and httpx over aiohttp 2,093. Adapters
see only `UpstreamClient`, so the engine can change here without touching them. Every transport failure is
translated into the gateway's own upstream errors, without hosts or credentials in the detail.

Requests to configured upstreams go out as configured (operators may run them on private addresses). URLs
that come from tenants or upstream outputs go out `guarded`: through a second pool whose resolver keeps only
the addresses `ssrf.AddressPolicy` allows, so the check is on the address actually connected to, and no
redirect is followed; a refusal raises `ssrf.AddressRefused`.

A client may be given a `CallObserver` (the adapter registry binds one to the provider's catalog name): each
call is reported with the operation the adapter names, its duration, and how it failed, if it did.

Calls made while a request is served carry its id as `X-Request-Id` (from `request_context`, so adapters need not
know), and the request's fields learn the call's status and latency, which its access log line then shows. Each
call is also logged on `gateway.upstream`: at DEBUG when answered below 500 (as most are: at INFO this would double
the log of a busy gateway, whose pollers and dispatchers call upstreams without any request), at INFO when it
failed for want of an answer, with a 5xx or with a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from gateway import request_context
from gateway.errors import Delivery, UpstreamError, UpstreamTimeout
from gateway.ssrf import AddressPolicy, AddressRefused, ip_literal, url_host

_CHUNK_BYTES = 64 * 1024
REQUEST_ID_HEADER = "X-Request-Id"
logger = logging.getLogger("gateway.upstream")

CallObserver = Callable[[str, float, str | None], None]
"""Told of each upstream call: its operation, its duration in seconds, and its failure's kind (`failure_kind`),
None for an answer below 400."""


def failure_kind(status: int | None = None, error: BaseException | None = None) -> str | None:
    """How a call failed: `timeout` or `connection` when no answer came (`refused` for a disallowed address), else
    by the answer's status: `http_429`, `http_4xx`, `http_5xx`; None for a successful answer."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, AddressRefused):
        return "refused"
    if error is not None:
        return "connection"
    if status is None or status < 400:
        return None
    return "http_429" if status == 429 else "http_4xx" if status < 500 else "http_5xx"


def _ignore(operation: str, seconds: float, failure: str | None) -> None:
    pass


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise UpstreamError("The upstream provider sent a response that is not JSON") from None


class UpstreamStream:
    """An upstream response whose body is read as it is passed on; released when read to the end or closed."""

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}
        self._response = response
        self._read_timeout = read_timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (a read returns what is there, so events are passed on at once); a failed
        read is an UpstreamError."""
        try:
            with _mapped_errors(self._read_timeout):
                async for chunk in self._response.content.iter_chunked(_CHUNK_BYTES):
                    yield chunk
        finally:
            self.close()

    def close(self) -> None:
        self._response.release()


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (the system resolver in a thread) and keeps only the addresses `policy` allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.allows(ipaddress.ip_address(r["host"].split("%", 1)[0]))]
        if not allowed:
            raise AddressRefused(host)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_connector(
    policy: AddressPolicy, max_connections: int, resolver: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """A connection pool that only connects to addresses `policy` allows (names are checked by the resolver,
    IP literals, which aiohttp never resolves, by `check_literal` before the request)."""
    return aiohttp.TCPConnector(
        limit=max_connections, keepalive_timeout=60, ttl_dns_cache=300, resolver=GuardedResolver(policy, resolver)
    )


def check_literal(url: str, policy: AddressPolicy) -> None:
    """Refuse `url` unless its host is a name (left to the guarded resolver) or an IP literal `policy` allows."""
    host = url_host(url)
    if host is None:
        raise AddressRefused(url)
    connected = URL(url).host or ""  # what aiohttp connects to
    for literal in (ip_literal(host), ip_literal(connected.strip("[]"))):
        if literal is not None and not policy.allows(literal):
            raise AddressRefused(host)


class UpstreamClient:
    """One provider's connection pools: the configured upstream's, and a guarded one (`policy`) for URLs from
    tenants and upstream outputs. `name` (the provider's catalog name) labels its calls in the log."""

    def __init__(
        self,
        timeout: float,
        max_connections: int,
        policy: AddressPolicy | None = None,
        observe: CallObserver = _ignore,
        name: str = "upstream",
    ) -> None:
        self._timeout = timeout
        self._observe = observe
        self._name = name
        self._max_connections = max_connections
        self._policy = policy or AddressPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        json_body: Any = None,
        content: bytes | None = None,
        timeout: float | None = None,
        guarded: bool = False,
        operation: str = "request",
    ) -> UpstreamResponse:
        """Send `json_body` as JSON, or `content` as it is; no redirect is followed. `operation` names the call
        for the observer (a fixed word per adapter call: `create`, `get`, `health`...)."""
        limit = timeout or self._timeout
        data = content if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        headers = _with_request_id(headers)
        with self._observed(operation) as answered:
            with _mapped_errors(limit):
                async with self._client(url, guarded).request(
                    method, url, headers=headers, data=data, timeout=aiohttp.ClientTimeout(total=limit), allow_redirects=False
                ) as response:
                    body = await response.read()
            answered.append(response.status)
            return UpstreamResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, body)

    async def stream(
        self, url: str, *, headers: dict[str, str], guarded: bool = False, operation: str = "stream"
    ) -> UpstreamStream:
        """GET `url` and hand back the response before its body; the timeout applies to connecting and each read.
        The observer is told the time to the response's head."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=self._timeout)
        headers = _with_request_id(headers)
        with self._observed(operation) as answered, _mapped_errors(self._timeout):
            response = await self._client(url, guarded).get(url, headers=headers, timeout=timeout, allow_redirects=False)
            answered.append(response.status)
        return UpstreamStream(response, self._timeout)

    async def aclose(self) -> None:
        for session in (self._session, self._guarded):
            if session is not None:
                await session.close()
        self._session = self._guarded = None

    @contextlib.contextmanager
    def _observed(self, operation: str) -> Iterator[list[int]]:
        """Report the block's call to the observer; the block appends the answer's status once it has one."""
        start, answered = time.perf_counter(), list[int]()
        try:
            yield answered
        except (UpstreamError, AddressRefused) as exc:
            self._report(operation, time.perf_counter() - start, None, failure_kind(error=exc))
            raise
        if answered:
            self._report(operation, time.perf_counter() - start, answered[0], failure_kind(answered[0]))

    def _report(self, operation: str, seconds: float, status: int | None, failure: str | None) -> None:
        """Tell the observer, the current request's fields (status 0: no answer came) and the log of one call."""
        self._observe(operation, seconds, failure)
        call: dict[str, request_context.Field] = {"upstream_status": status or 0, "upstream_latency_ms": round(seconds * 1000, 1)}
        request_context.tag(**call)
        level = logging.DEBUG if failure in (None, "http_4xx") else logging.INFO
        extra = {"provider": self._name, "operation": operation, "failure": failure, **call}
        logger.log(level, "%s %s: %s in %.1f ms", self._name, operation, status or failure, seconds * 1000, extra=extra)

    def _client(self, url: str, guarded: bool) -> aiohttp.ClientSession:
        # Created lazily so they bind to the running event loop.
        if guarded:
            check_literal(url, self._policy)
            if self._guarded is None:
                self._guarded = _session(guarded_connector(self._policy, self._max_connections))
            return self._guarded
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = _session(connector)
        return self._session


def _with_request_id(headers: dict[str, str]) -> dict[str, str]:
    request_id = request_context.request_id()
    return headers if request_id is None else {**headers, REQUEST_ID_HEADER: request_id}


def _session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    # trust_env stays off: a proxy from the environment would connect on the gateway's behalf, past the resolver.
    return aiohttp.ClientSession(connector=connector, raise_for_status=False, auto_decompress=True, trust_env=False)


# Most specific first: aiohttp's timeout classes also derive from its connection errors. Only a failed connection
# proves the request never reached the upstream; after any other failure it may have been taken.
_ERRORS: tuple[tuple[type[BaseException], str, Delivery], ...] = (
    (aiohttp.ConnectionTimeoutError, "The upstream provider could not be reached within {timeout:g}s", Delivery.NOT_SENT),
    (asyncio.TimeoutError, "The upstream provider did not answer within {timeout:g}s", Delivery.UNKNOWN),
    (aiohttp.ClientConnectorError, "The upstream provider could not be reached", Delivery.NOT_SENT),
    (aiohttp.ServerDisconnectedError, "The upstream provider closed the connection without answering", Delivery.UNKNOWN),
    (aiohttp.ClientPayloadError, "The upstream provider sent an incomplete response", Delivery.UNKNOWN),
    (aiohttp.ClientError, "The upstream request failed ({name})", Delivery.UNKNOWN),
    (OSError, "The upstream request failed ({name})", Delivery.UNKNOWN),
)


@contextlib.contextmanager
def _mapped_errors(timeout: float) -> Iterator[None]:
    try:
        yield
    except AddressRefused:
        raise
    except Exception as exc:
        if isinstance(refused := _cause(exc, AddressRefused), AddressRefused):
            raise refused from exc
        for kind, message, delivery in _ERRORS:
            if isinstance(exc, kind):
                error_class = UpstreamTimeout if issubclass(kind, asyncio.TimeoutError) else UpstreamError
                raise error_class(message.format(timeout=timeout, name=type(exc).__name__), delivery=delivery) from exc
        raise


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in `exc`'s chain of causes (aiohttp wraps resolver errors)."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or getattr(seen, "os_error", None)
    return seen
