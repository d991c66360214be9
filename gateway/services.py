"""The gateway's services wired together over one Redis client and one set of providers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.cog_servers import CogServerPool
from gateway.config import Settings
from gateway.dispatch import SlotDispatcher
from gateway.events import Events
from gateway.files import FileLimits, Files, file_id_in, prediction_owners
from gateway.keys import KeyService
from gateway.metrics import Metrics
from gateway.outputs import OutputLinks
from gateway.predictions import Predictions
from gateway.providers import CogProvider, Provider, build_providers
from gateway.schemas import Schemas
from gateway.storage import LocalStorage
from gateway.store import (
    FileStore,
    KeyStore,
    PredictionStore,
    QueueStore,
    SchemaStore,
    connect,
    shared_secret,
)
from gateway.validation import UrlPolicy
from gateway.webhooks import UpstreamHooks


@dataclass(frozen=True)
class Services:
    settings: Settings
    catalog: Catalog
    redis: aioredis.Redis
    providers: dict[str, Provider]
    auth: Authenticator
    keys: KeyService
    schemas: Schemas
    predictions: Predictions
    upstream_hooks: UpstreamHooks
    files: Files
    model_servers: dict[str, CogServerPool]  # managed Cog servers by provider name
    metrics: Metrics
    outputs: OutputLinks
    events: Events


@contextlib.asynccontextmanager
async def open_services(settings: Settings, catalog: Catalog, metrics: Metrics | None = None) -> AsyncIterator[Services]:
    """Build every service, start managed model servers and background tasks, and close it all on exit."""
    assert settings.redis_url, "the Redis URL is resolved (or an embedded server started) before services open"
    redis = connect(settings.redis_url)
    providers = build_providers(catalog.providers)
    tasks: list[asyncio.Task[None]] = []
    pools: dict[str, CogServerPool] = {}
    try:
        services = await _build(settings, catalog, redis, providers, metrics or Metrics())
        pools = services.model_servers
        for pool in pools.values():
            await pool.start()
        tasks.append(asyncio.create_task(services.auth.watch()))
        tasks.append(asyncio.create_task(services.events.run()))
        tasks.append(asyncio.create_task(services.files.sweep_forever(settings.file_sweep_seconds)))
        tasks += [asyncio.create_task(d.run()) for d in services.predictions.dispatchers.values()]
        yield services
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, pool in pools.items():
            await services.predictions.dispatchers[name].abandon("The model server stopped with the gateway while running this prediction")
            await pool.stop()
        for provider in providers.values():
            await provider.aclose()
        await redis.aclose()


async def _build(
    settings: Settings, catalog: Catalog, redis: aioredis.Redis, providers: dict[str, Provider], metrics: Metrics
) -> Services:
    local_base = settings.local_base_url()
    hooks = UpstreamHooks(await shared_secret(redis, "upstream-webhooks"), settings.public_base_url, local_base)
    key_store = KeyStore(redis)
    prediction_store = PredictionStore(redis, settings.prediction_retention_seconds)
    files = Files(
        FileStore(redis),
        LocalStorage(settings.files_directory()),
        await shared_secret(redis, "files"),
        prediction_owners(prediction_store),
        FileLimits(settings.file_max_bytes, settings.file_expiry_seconds, settings.file_page_size),
    )
    events = Events(redis)
    policy = UrlPolicy(settings.allow_private_input_urls, gateway_file=lambda url: file_id_in(url) is not None)
    schemas = Schemas(SchemaStore(redis), providers, policy)

    async def resolve_files(tenant: str, given: dict[str, Any], local: bool) -> dict[str, Any]:
        return await files.resolve_inputs(tenant, given, base_url=local_base if local else settings.public_base_url)

    predictions = Predictions(
        catalog,
        prediction_store,
        schemas,
        providers,
        refresh_after=settings.refresh_after_seconds,
        webhook_url=hooks.url,
        resolve_files=resolve_files,
        metrics=metrics,
        events=events,
    )
    predictions.dispatchers = {
        name: SlotDispatcher(name, provider, QueueStore(redis, name), predictions, provider.run_timeout) for name, provider in _cog(providers).items()
    }
    pools = _managed_pools(catalog, providers, hooks, files, local_base)
    auth = Authenticator(key_store, settings.key_cache_seconds)
    outputs = OutputLinks(await shared_secret(redis, "outputs"))
    return Services(
        settings, catalog, redis, providers, auth, KeyService(key_store), schemas, predictions, hooks, files, pools, metrics, outputs, events
    )


def _cog(providers: dict[str, Provider]) -> dict[str, CogProvider]:
    return {name: p for name, p in providers.items() if isinstance(p, CogProvider)}


def _managed_pools(
    catalog: Catalog, providers: dict[str, Provider], hooks: UpstreamHooks, files: Files, local_base: str
) -> dict[str, CogServerPool]:
    """Model servers the gateway runs itself; each learns its webhook token and where to upload outputs."""
    pools = {}
    for name, provider in _cog(providers).items():
        managed = catalog.providers[name].managed
        if managed is None:
            continue
        for url in managed.urls():
            provider.server_tokens[url] = hooks.server_token(url)
        upload_url = functools.partial(files.upload_url, local_base)
        pools[name] = CogServerPool(
            managed.model_dir, managed.urls(), upload_url=upload_url, webhook_token=hooks.server_token, env=managed.env
        )
    return pools
