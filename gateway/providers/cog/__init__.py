"""Self-hosted Cog model servers as one provider: the wire adapter, the slot dispatcher over a durable queue,
and the servers the gateway runs itself."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.catalog import Route
from gateway.config import ProviderConfig
from gateway.providers.base import Callback, Capabilities, CreateRequest, Provider, Reporting, UpstreamPrediction
from gateway.providers.cog.adapter import CogAdapter, Health, ServerBusy, ServerStatus, from_cog, split_upstream_id, upstream_id
from gateway.providers.cog.dispatcher import SlotDispatcher
from gateway.providers.cog.servers import CogServerPool
from gateway.providers.http import UpstreamClient

_STOPPED_WITH_GATEWAY = "The model server stopped with the gateway while running this prediction"
_LOST_WITH_GATEWAY = "The gateway was killed while the model server ran this prediction; the server was replaced"


class CogProvider(Provider):
    capabilities = Capabilities(get_by_id=False, cancel=True, slots=True)

    def __init__(self, name: str, config: ProviderConfig, client: UpstreamClient, reporting: Reporting) -> None:
        self.name = name
        self.servers = config.server_urls()
        managed = config.managed.urls() if config.managed else []
        listed_token = config.webhook_token.get_secret_value() if config.webhook_token else None
        tokens = {server: listed_token for server in config.servers if listed_token}
        tokens.update({server: reporting.server_token(server) for server in managed})
        self.adapter = CogAdapter(client, tokens)
        self.dispatcher = SlotDispatcher(
            name, self.adapter, self.servers, reporting.queue(name), reporting.report, reporting.prepare, config.run_timeout
        )
        self._running: asyncio.Task[None] | None = None
        self.pool: CogServerPool | None = None
        self._servers_stop_with_gateway = config.managed is not None  # run by this process or its supervisor
        if config.managed is not None and reporting.runs_servers:
            self.pool = CogServerPool(
                config.managed.model_dir,
                managed,
                self.adapter.health,
                upload_url=reporting.upload_url,
                webhook_token=reporting.server_token,
                env=config.managed.env,
            )

    async def create(self, request: CreateRequest) -> UpstreamPrediction | None:
        """Queue the prediction: it stays `starting` until a server's slot takes it."""
        await self.dispatcher.submit(request.tenant, request.prediction_id)
        return None

    async def cancel(self, upstream_id: str) -> UpstreamPrediction | None:
        await self.adapter.cancel(upstream_id)
        return None

    def parse_webhook(self, callback: Callback, upstream_id: str) -> UpstreamPrediction:
        return self.adapter.parse_webhook(callback.payload, upstream_id, callback.headers.get("authorization"))

    async def finished(self, upstream_id: str) -> None:
        await self.dispatcher.release(upstream_id)

    async def version_schema(self, model: str, route: Route) -> dict[str, Any] | None:
        return await self.adapter.openapi(self.servers)

    async def start(self) -> None:
        """Start the managed servers this process runs (waiting until they are ready), then dispatching."""
        await self.start_servers()
        self._running = asyncio.create_task(self.dispatcher.run())

    async def start_servers(self) -> None:
        if self.pool is not None:
            await self.pool.start()
            replaced = {server.url for server in self.pool.servers if server.replaced_left_behind}
            if replaced:  # what ran there was lost with the killed gateway; without this it would fail at run_timeout
                await self.dispatcher.fail_runs_on(replaced, _LOST_WITH_GATEWAY)

    def drain(self) -> None:
        """Stop dispatching: the dispatcher gives back what it claimed and has not handed to a server."""
        if self._running is not None:
            self._running.cancel()

    async def aclose(self) -> None:
        """Stop dispatching; fail this process's runs on managed servers, which stop with the gateway; close the
        pool."""
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
            self._running = None
        if self._servers_stop_with_gateway:
            await self.dispatcher.abandon(_STOPPED_WITH_GATEWAY)
        if self.pool is not None:
            await self.pool.stop()
        await self.adapter.aclose()


__all__ = [
    "CogAdapter",
    "CogProvider",
    "CogServerPool",
    "Health",
    "ServerBusy",
    "ServerStatus",
    "from_cog",
    "split_upstream_id",
    "upstream_id",
]
