"""The Replicate adapter against real HTTP servers: where its credentials go."""

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import ProviderConfig
from gateway.providers import UpstreamClient
from gateway.providers.replicate import ReplicateProvider
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
    provider = ReplicateProvider("replicate", config, UpstreamClient(timeout=5, max_connections=4))
    try:
        for url in (f"{upstream}/delivery/out.png", f"{stranger}/evil/out.png"):
            stream = await provider.open_output(url)
            assert stream.status == 200
            assert b"".join([chunk async for chunk in stream.chunks()]) == b"file"
    finally:
        await provider.aclose()
    assert headers[0]["authorization"] == "Bearer r8_secret"
    assert "authorization" not in headers[1]
