"""Upstream adapters: one file (or folder) per upstream kind behind the small `Provider` contract."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import ProviderConfig
from gateway.providers.base import (
    Callback,
    Capabilities,
    CreateRequest,
    Provider,
    Reporting,
    TrainingRequest,
    UpstreamPrediction,
)
from gateway.providers.cog import CogProvider
from gateway.providers.credentials import Credential, CredentialPool, CredentialPools, CredentialState, CredentialStatus
from gateway.providers.http import CallObserver, UpstreamClient, UpstreamStream
from gateway.providers.replicate import ReplicateProvider
from gateway.ssrf import AddressPolicy

ProviderFactory = Callable[[str, ProviderConfig, UpstreamClient, Reporting], Provider]


def _replicate(name: str, config: ProviderConfig, client: UpstreamClient, reporting: Reporting) -> Provider:
    # Polled and called back: it reports through the webhook path, and takes only the credential pools.
    return ReplicateProvider(name, config, client, reporting.pools.pool(name, config) if reporting.pools else None)


REGISTRY: dict[str, tuple[type[Provider], ProviderFactory]] = {
    "replicate": (ReplicateProvider, _replicate),
    "cog": (CogProvider, CogProvider),
}


def capabilities_of(config: ProviderConfig) -> Capabilities:
    """What a configured provider's kind can do, known before any adapter is built."""
    return REGISTRY[config.kind][0].capabilities


def build_providers(
    configs: dict[str, ProviderConfig],
    reporting: Reporting,
    policy: AddressPolicy | None = None,
    observer: Callable[[str], CallObserver] | None = None,
) -> dict[str, Provider]:
    """One adapter, with its own connection pools, per configured provider; `policy` guards URLs from outputs,
    and `observer(name)`, when given, is told of every call the provider `name`'s adapter makes."""
    return {
        name: REGISTRY[config.kind][1](name, config, _client(name, config, policy, observer), reporting)
        for name, config in configs.items()
    }


def _client(
    name: str, config: ProviderConfig, policy: AddressPolicy | None, observer: Callable[[str], CallObserver] | None
) -> UpstreamClient:
    if observer is None:
        return UpstreamClient(config.timeout, config.max_connections, policy, name=name)
    return UpstreamClient(config.timeout, config.max_connections, policy, observer(name), name)


__all__ = [
    "REGISTRY",
    "CallObserver",
    "Callback",
    "Capabilities",
    "CogProvider",
    "CreateRequest",
    "Credential",
    "CredentialPool",
    "CredentialPools",
    "CredentialState",
    "CredentialStatus",
    "Provider",
    "ProviderFactory",
    "ReplicateProvider",
    "Reporting",
    "TrainingRequest",
    "UpstreamClient",
    "UpstreamPrediction",
    "UpstreamStream",
    "build_providers",
    "capabilities_of",
]
