"""The gateway's services wired together over one Redis client and one set of providers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.keys import KeyService
from gateway.predictions import Predictions
from gateway.providers import Provider, build_providers
from gateway.schemas import Schemas
from gateway.store import KeyStore, PredictionStore, SchemaStore, connect, shared_secret
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


@contextlib.asynccontextmanager
async def open_services(settings: Settings, catalog: Catalog) -> AsyncIterator[Services]:
    """Build every service, run the key-change watcher, and close it all on exit."""
    assert settings.redis_url, "the Redis URL is resolved (or an embedded server started) before services open"
    redis = connect(settings.redis_url)
    providers = build_providers(catalog.providers)
    try:
        hooks = UpstreamHooks(await shared_secret(redis, "upstream-webhooks"), settings.public_base_url)
        key_store = KeyStore(redis)
        auth = Authenticator(key_store, settings.key_cache_seconds)
        schemas = Schemas(SchemaStore(redis), providers, allow_private_urls=settings.allow_private_input_urls)
        predictions = Predictions(
            catalog,
            PredictionStore(redis, settings.prediction_retention_seconds),
            schemas,
            providers,
            refresh_after=settings.refresh_after_seconds,
            webhook_url=hooks.url,
        )
        services = Services(settings, catalog, redis, providers, auth, KeyService(key_store), schemas, predictions, hooks)
        watcher = asyncio.create_task(auth.watch())
        try:
            yield services
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    finally:
        for provider in providers.values():
            await provider.aclose()
        await redis.aclose()
