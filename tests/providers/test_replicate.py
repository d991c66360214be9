"""The Replicate adapter against real HTTP servers: where its credentials go, and which output URLs it fetches."""

import socket
from collections.abc import Iterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import ProviderConfig
from gateway.errors import UpstreamError
from gateway.providers import UpstreamClient
from gateway.providers.http import GuardedResolver
from gateway.providers.replicate import ReplicateProvider
from gateway.ssrf import AddressPolicy, AddressRefused
from tests.servers import serve_in_thread


@pytest.fixture(scope="module")
def seen() -> Iterator[tuple[list[dict[str, str]], str, str]]:
    """Two servers recording the headers they get: one is the upstream's own host, the other a stranger."""
    headers: list[dict[str, str]] = []

    async def record(request: Request) -> Response:
        headers.append(dict(request.headers))
        return Response(b"file", media_type="image/png")

    app = Starlette(routes=[Route("/{path:path}", record)])
    with serve_in_thread(app) as upstream, serve_in_thread(app) as stranger:
        yield headers, upstream, stranger


async def test_output_files_get_the_token_only_on_the_upstreams_own_hosts(seen: tuple[list[dict[str, str]], str, str]) -> None:
    headers, upstream, stranger = seen
    config = ProviderConfig(kind="replicate", base_url=f"{upstream}/v1").model_copy(update={"tokens": (SecretStr("r8_secret"),)})
    client = UpstreamClient(timeout=5, max_connections=4, policy=AddressPolicy.from_setting("127.0.0.1/32"))
    provider = ReplicateProvider("replicate", config, client)
    try:
        for url in (f"{upstream}/delivery/out.png", f"{stranger}/evil/out.png"):
            stream = await provider.open_output(url)
            assert stream.status == 200
            assert b"".join([chunk async for chunk in stream.chunks()]) == b"file"
    finally:
        await provider.aclose()
    assert headers[0]["authorization"] == "Bearer r8_secret"
    assert "authorization" not in headers[1]


def _provider(upstream: str) -> ReplicateProvider:
    config = ProviderConfig(kind="replicate", base_url=f"{upstream}/v1").model_copy(update={"tokens": (SecretStr("r8_secret"),)})
    return ReplicateProvider("replicate", config, UpstreamClient(timeout=5, max_connections=4))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.0.0.1."])
async def test_outputs_off_the_upstreams_origin_are_not_fetched_from_internal_addresses(
    seen: tuple[list[dict[str, str]], str, str], host: str
) -> None:
    headers, upstream, stranger = seen
    before = len(headers)
    provider = _provider(upstream)
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.open_output(f"http://{host}:{stranger.rsplit(':', 1)[1]}/internal")
    finally:
        await provider.aclose()
    assert (caught.value.status, caught.value.detail) == (502, "The output file's address is not allowed")
    assert len(headers) == before


class _FixedResolver(AbstractResolver):
    """Answers every name with the given addresses, as a rebinding DNS server might."""

    def __init__(self, *addresses: str) -> None:
        self._addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET, proto=0, flags=0
            )
            for a in self._addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_guarded_resolver_keeps_only_allowed_addresses_and_refuses_when_none_is() -> None:
    mixed = GuardedResolver(AddressPolicy(), _FixedResolver("10.0.0.1", "93.184.215.14", "::1", "2606:4700::1111"))
    assert [r["host"] for r in await mixed.resolve("mixed.test", 80)] == ["93.184.215.14", "2606:4700::1111"]
    for internal in ("127.0.0.1", "169.254.169.254", "100.100.100.200", "::ffff:127.0.0.1", "fd00:ec2::254"):
        with pytest.raises(AddressRefused):
            await GuardedResolver(AddressPolicy(), _FixedResolver(internal)).resolve("internal.test", 80)
