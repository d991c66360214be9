"""Resolution of public model references to catalog entries and upstream routes; input aliases and defaults."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import (
    CatalogConfig,
    DeploymentConfig,
    ImagesConfig,
    ModelConfig,
    ProviderConfig,
    RouteConfig,
    VersionConfig,
)
from gateway.config_listing import CollectionConfig, HardwareConfig
from gateway.errors import InvalidInput, InvalidVersion, NotFound

LOCAL_CPU = HardwareConfig(sku="cpu", name="CPU (local)")  # what a cog provider declaring no hardware offers
_VERSION_REF = re.compile(r"^(?:(?P<model>[^/:\s]+/[^/:\s]+):)?(?P<id>[0-9a-f]{64})$")


class TargetKind(enum.Enum):
    """What a route names upstream: a version id, an `owner/name` model, or a deployment."""

    VERSION = "version"
    MODEL = "model"
    DEPLOYMENT = "deployment"
    SERVER = "server"  # the one model a Cog server runs


@dataclass(frozen=True)
class Route:
    """One upstream a version can run on. `priority` (lowest first) and `weight` (a share among equal
    priorities) order a version's routes; `label` names the route in records, breakers and metrics."""

    provider: str
    kind: TargetKind
    target: str
    priority: int = 0
    weight: int = 1

    @classmethod
    def from_config(cls, route: RouteConfig, position: int = 0) -> Route:
        priority = position if route.priority is None else route.priority
        for kind in (TargetKind.VERSION, TargetKind.MODEL, TargetKind.DEPLOYMENT):
            target = getattr(route, kind.value)
            if target is not None:
                return cls(route.provider, kind, target, priority, route.weight)
        return cls(route.provider, TargetKind.SERVER, "", priority, route.weight)

    @property
    def label(self) -> str:
        """`provider:kind:target` (`provider:server:` for a Cog provider's own model)."""
        return f"{self.provider}:{self.kind.value}:{self.target}"


class RefKind(enum.Enum):
    """How a create request names what to run."""

    VERSION = "version"  # `<64 hex>` or `owner/name:<64 hex>` in the body
    MODEL = "model"  # `owner/name` in the path: its latest version
    DEPLOYMENT = "deployment"  # `owner/name` of a catalog deployment in the path


@dataclass(frozen=True)
class Reference:
    kind: RefKind
    name: str


@dataclass(frozen=True)
class Resolved:
    """A public version ready to run: its model, version, optional deployment (with its input defaults) and
    ordered routes."""

    model: ModelConfig
    version: VersionConfig
    routes: tuple[Route, ...]
    deployment: str | None = None
    input_defaults: dict[str, Any] = field(default_factory=dict)

    def prepare_input(self, given: dict[str, Any]) -> dict[str, Any]:
        """Rename aliased fields to their real names, then fill in the deployment's defaults, then the catalog's."""
        prepared = _apply_aliases(given, self.model.aliases)
        for defaults in (_apply_aliases(self.input_defaults, self.model.aliases), self.model.defaults):
            for name, value in defaults.items():
                prepared.setdefault(name, value)
        return prepared

    def deployed(self, name: str, input_defaults: dict[str, Any]) -> Resolved:
        """This version run through the deployment `name`, which fills in `input_defaults`."""
        return replace(self, deployment=name, input_defaults=input_defaults)


class Catalog:
    """Read-only index over the catalog configuration."""

    def __init__(self, config: CatalogConfig) -> None:
        self.providers: dict[str, ProviderConfig] = dict(config.providers)
        self._models = {m.name: m for m in config.models}
        self._versions = {v.id: (m, v) for m in config.models for v in m.versions}
        self._deployments = {d.name: d for d in config.deployments}
        self._collections = {c.slug: c for c in config.collections}
        self.images: ImagesConfig = config.openai.images  # the models behind the OpenAI-style images API

    def models(self) -> list[ModelConfig]:
        return list(self._models.values())

    def collections(self) -> list[CollectionConfig]:
        return list(self._collections.values())

    def collection(self, slug: str) -> CollectionConfig:
        collection = self._collections.get(slug)
        if collection is None:
            raise NotFound(f"Collection {slug} not found")
        return collection

    def hardware(self) -> list[HardwareConfig]:
        """What the providers declare, in catalog order, one entry per SKU (the first declaration's name wins); a cog
        provider that declares none offers `LOCAL_CPU`."""
        found: dict[str, HardwareConfig] = {}
        for provider in self.providers.values():
            offered = provider.hardware or ([LOCAL_CPU] if provider.kind == "cog" else [])
            for item in offered:
                found.setdefault(item.sku, item)
        return list(found.values())

    def deployment_names(self) -> list[str]:
        """The operator's deployments (`owner/name`), in catalog order."""
        return list(self._deployments)

    def route_lists(self) -> list[tuple[Route, ...]]:
        """The routes of each version and deployment (a create tries one such list)."""
        versions = [_routes(v.routes) for m in self._models.values() for v in m.versions]
        return versions + [_routes(d.routes) for d in self._deployments.values()]

    def routes(self) -> list[tuple[Route, str]]:
        """Every route of every version and deployment, each with the public model it serves."""
        found = [(route, m.name) for m in self._models.values() for v in m.versions for route in _routes(v.routes)]
        return found + [(route, d.model) for d in self._deployments.values() for route in _routes(d.routes)]

    def resolve(self, reference: Reference) -> Resolved:
        if reference.kind is RefKind.VERSION:
            return self.resolve_version(reference.name)
        if reference.kind is RefKind.MODEL:
            return self.resolve_model(reference.name)
        return self.resolve_deployment(reference.name)

    def resolve_version(self, ref: str) -> Resolved:
        """`<64 hex>` or `owner/name:<64 hex>` → Resolved; anything else is Replicate's 422."""
        match = _VERSION_REF.match(ref.strip()) if isinstance(ref, str) else None
        found = self._versions.get(match["id"]) if match else None
        if found is None or (match and match["model"] and match["model"] != found[0].name):
            raise InvalidVersion()
        model, version = found
        return Resolved(model, version, _routes(version.routes))

    def resolve_model(self, name: str) -> Resolved:
        """The latest version of `owner/name`."""
        model = self.model(name)
        version = model.versions[0]
        return Resolved(model, version, _routes(version.routes))

    def resolve_deployment(self, name: str) -> Resolved:
        deployment = self._deployments.get(name)
        if deployment is None:
            raise NotFound(f"Deployment {name} not found")
        return self._deployment_target(deployment)

    def model(self, name: str) -> ModelConfig:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"Model {name} not found")
        return model

    def resolve_model_version(self, name: str, version_id: str) -> Resolved:
        """A version the model lists (the version endpoints); NotFound otherwise."""
        resolved = self._versions.get(version_id)
        if resolved is None or resolved[0].name != name:
            raise NotFound(f"Version {version_id} of model {name} not found")
        return Resolved(resolved[0], resolved[1], _routes(resolved[1].routes))

    def resolve_permitted(self, name: str, version_id: str, allows: Callable[[str, str], bool]) -> Resolved:
        """A version the model lists that `allows(model, version)` (a key's allow-list) admits; Replicate's
        InvalidVersion (422) otherwise, for a version that does not exist as for one that may not be used."""
        try:
            resolved = self.resolve_model_version(name, version_id)
        except NotFound:
            raise InvalidVersion() from None
        if not allows(name, version_id):
            raise InvalidVersion()
        return resolved

    def _deployment_target(self, deployment: DeploymentConfig) -> Resolved:
        model = self._models[deployment.model]
        version = next((v for v in model.versions if v.id == deployment.version), model.versions[0])
        routes = deployment.routes or version.routes
        return Resolved(model, version, _routes(routes), deployment=deployment.name)


def _routes(routes: list[RouteConfig]) -> tuple[Route, ...]:
    return tuple(Route.from_config(r, position) for position, r in enumerate(routes))


def _apply_aliases(given: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    prepared: dict[str, Any] = {}
    conflicts = []
    for name, value in given.items():
        real = aliases.get(name, name)
        if real != name and real in given:
            conflicts.append(
                {
                    "type": "alias_conflict",
                    "field": f"input.{name}",
                    "description": f"{name} is an alias of {real}; send only one of them",
                }
            )
        prepared[real] = value
    if conflicts:
        raise InvalidInput(conflicts)
    return prepared
