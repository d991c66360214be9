"""Upstream adapters: one file per upstream kind behind the small `Provider` contract."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import ProviderConfig
from gateway.providers.base import (
    Capabilities,
    CreateRequest,
    Provider,
    UpstreamPrediction,
)
from gateway.providers.client import UpstreamClient
from gateway.providers.cog import CogProvider, ServerBusy
from gateway.providers.replicate import ReplicateProvider

ProviderFactory = Callable[[str, ProviderConfig, UpstreamClient], Provider]

REGISTRY: dict[str, ProviderFactory] = {"replicate": ReplicateProvider, "cog": CogProvider}


def build_providers(configs: dict[str, ProviderConfig]) -> dict[str, Provider]:
    """One adapter, with its own connection pool, per configured provider whose kind is registered."""
    providers = {}
    for name, config in configs.items():
        factory = REGISTRY.get(config.kind)
        if factory is not None:
            providers[name] = factory(name, config, UpstreamClient(config.timeout, config.max_connections))
    return providers


__all__ = [
    "REGISTRY",
    "Capabilities",
    "CogProvider",
    "CreateRequest",
    "Provider",
    "ProviderFactory",
    "ServerBusy",
    "UpstreamClient",
    "UpstreamPrediction",
    "build_providers",
]
