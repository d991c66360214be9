"""Deployments: a tenant's own (create, read, list, release, delete) beside the catalog's operator-managed ones,
and what a prediction through a deployment runs.

A tenant's deployments are owned by its tenant name, the `username` of `GET /v1/account`. Tenants never see each
other's: another owner's deployment is not found, exactly as one that does not exist. A deployment pins a catalog
version the key may use and may carry input defaults, which a prediction's own input overrides.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gateway.audit import Actor, AuditEvent, Subject
from gateway.catalog import Catalog, Reference, RefKind, Resolved
from gateway.cursors import window
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.keys import KeyRecord
from gateway.store import AuditStore, DeploymentStore, StoredDeployment
from gateway.validation import check_nesting

PAGE_SIZE = 100
# Replicate's rule for names: lowercase letters, digits, dashes, underscores and periods, starting and ending
# with a letter or digit.
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")
# The catalog's deployments run on its routes, not on hardware of their own: their configuration says so.
CATALOG_HARDWARE = "upstream"
_REPLACE_ATTEMPTS = 5  # concurrent releases of one deployment: each retry re-reads the one that came first


@dataclass(frozen=True)
class Release:
    """What a release of a deployment runs and how it is configured."""

    model: str
    version: str
    hardware: str
    min_instances: int
    max_instances: int
    input_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """A deployment as shown: its owner and name, and its current release (`number`, made at `released_at`)."""

    owner: str
    name: str
    release: Release
    number: int
    released_at: float


@dataclass(frozen=True)
class DeploymentPage:
    deployments: list[Deployment]
    next_cursor: str | None
    previous_cursor: str | None


class Deployments:
    def __init__(self, catalog: Catalog, store: DeploymentStore, audit: AuditStore, page_size: int = PAGE_SIZE) -> None:
        self._catalog = catalog
        self._store = store
        self._audit = audit
        self._page_size = page_size

    async def create(self, key: KeyRecord, name: str, release: Release, actor: Actor) -> Deployment:
        """A new deployment of the key's tenant at release 1. `name` may carry the tenant as owner (`owner/name`);
        another owner is Forbidden, a bad name, a version the key may not use or a name in use InvalidInput."""
        owner, _, name = name.rpartition("/")
        if owner and owner != key.tenant:
            raise Forbidden(f"Deployments can only be created under your own account, {key.tenant}")
        _check_name(name)
        self._pin(key, release.model, release.version)
        _check_settings(release)
        if f"{key.tenant}/{name}" in self._catalog.deployment_names():
            raise _taken(key.tenant, name)
        now_ms = _now_ms()
        record = StoredDeployment(
            key.tenant, name, release.model, release.version, release.hardware, release.min_instances,
            release.max_instances, 1, now_ms, now_ms, release.input_defaults,
        )  # fmt: skip
        if not await self._store.insert(record):
            raise _taken(key.tenant, name)
        await self._record("deployment.create", actor, None, record)
        return _own_view(record)

    async def get(self, key: KeyRecord, owner: str, name: str) -> Deployment:
        own = await self._find(key, owner, name)
        if own is not None:
            return _own_view(own)
        shared = self._shared(key, f"{owner}/{name}")
        if shared is None:
            raise _not_found(owner, name)
        return _catalog_view(shared)

    async def list(self, key: KeyRecord, cursor: str | None) -> DeploymentPage:
        """The tenant's own deployments, newest first, a page at a time; the first page also has the catalog's that
        the key may use (after the tenant's own)."""
        page = await window(
            cursor,
            self._page_size,
            lambda edge, count: self._store.older(key.tenant, edge, count),
            lambda edge, count: self._store.newer(key.tenant, edge, count),
        )
        shown = [_own_view(d) for d in await self._store.load(key.tenant, page.entries)]
        if page.previous_cursor is None:  # the first page, however it was reached
            shared = (self._shared(key, name) for name in self._catalog.deployment_names())
            shown += [_catalog_view(resolved) for resolved in shared if resolved is not None]
        return DeploymentPage(shown, page.next_cursor, page.previous_cursor)

    async def update(self, key: KeyRecord, owner: str, name: str, changes: dict[str, Any], actor: Actor) -> Deployment:
        """A new release with `changes` (of version, hardware, instances, input defaults); none if nothing changes."""
        for _ in range(_REPLACE_ATTEMPTS):
            current = await self._own(key, owner, name)
            updated = replace(current, **changes)
            if updated == current:
                return _own_view(current)
            if updated.version != current.version:
                self._pin(key, updated.model, updated.version)
            _check_settings(updated)
            updated = replace(updated, number=current.number + 1, released_ms=_now_ms())
            if await self._store.replace(current, updated):
                await self._record("deployment.update", actor, current, updated)
                return _own_view(updated)
        raise Conflict("The deployment is being changed by another request; try again", retry_after=1)

    async def delete(self, key: KeyRecord, owner: str, name: str, actor: Actor) -> None:
        current = await self._own(key, owner, name)
        if not await self._store.delete(current):
            raise _not_found(owner, name)
        await self._record("deployment.delete", actor, current, None)

    async def resolve(self, key: KeyRecord, reference: Reference) -> Resolved:
        """What a create runs: for a deployment, the tenant's own by that name (its pinned version and defaults),
        else the catalog's; other references as the catalog resolves them."""
        if reference.kind is RefKind.DEPLOYMENT:
            owner, _, name = reference.name.partition("/")
            own = await self._find(key, owner, name)
            if own is not None:
                return self._pin(key, own.model, own.version).deployed(reference.name, own.input_defaults)
        return self._catalog.resolve(reference)

    async def _record(self, action: str, actor: Actor, before: StoredDeployment | None, after: StoredDeployment | None) -> None:
        """Add the change to the audit log, after it was made: the log's stream is in a hash slot of its own, so
        one transaction cannot hold both on a cluster (a process dying in between loses the entry, not the change)."""
        changed = after or before
        assert changed is not None
        subject = Subject("deployment", f"{changed.tenant}/{changed.name}")
        views = (None if before is None else asdict(before), None if after is None else asdict(after))
        await self._audit.append(AuditEvent(action, subject, (changed.tenant,), actor, *views).fields())

    async def _find(self, key: KeyRecord, owner: str, name: str) -> StoredDeployment | None:
        """The key's tenant's own deployment `owner/name`; None for any other owner, whatever it holds."""
        if owner != key.tenant or not NAME.match(name):
            return None
        return await self._store.get(key.tenant, name)

    async def _own(self, key: KeyRecord, owner: str, name: str) -> StoredDeployment:
        """The tenant's own deployment to change: Forbidden for a catalog one it can see, else NotFound."""
        own = await self._find(key, owner, name)
        if own is not None:
            return own
        if self._shared(key, f"{owner}/{name}") is not None:
            raise Forbidden("Deployments of the gateway's catalog are managed by its operator; they cannot be changed or deleted")
        raise _not_found(owner, name)

    def _shared(self, key: KeyRecord, full_name: str) -> Resolved | None:
        """The catalog's deployment `full_name`, if it exists and the key may use its version."""
        if full_name not in self._catalog.deployment_names():
            return None
        resolved = self._catalog.resolve_deployment(full_name)
        return resolved if key.allows(resolved.model.name, resolved.version.id) else None

    def _pin(self, key: KeyRecord, model: str, version: str) -> Resolved:
        """The catalog version a deployment runs, when the key may use it; else Replicate's InvalidVersion."""
        return self._catalog.resolve_permitted(model, version, key.allows)


def _check_name(name: str) -> None:
    if not NAME.match(name):
        description = (
            "The name may only contain lowercase letters, digits, dashes, underscores and periods, must start and end "
            "with a letter or digit, and be at most 100 characters"
        )
        raise InvalidInput([{"type": "pattern", "field": "name", "description": description}])


def _check_settings(release: Release | StoredDeployment) -> None:
    check_nesting(release.input_defaults)
    if release.min_instances > release.max_instances:
        description = "min_instances must not be greater than max_instances"
        raise InvalidInput([{"type": "range", "field": "min_instances", "description": description}])


def _taken(tenant: str, name: str) -> InvalidInput:
    return InvalidInput([{"type": "unique", "field": "name", "description": f"A deployment {tenant}/{name} already exists"}])


def _not_found(owner: str, name: str) -> NotFound:
    return NotFound(f"Deployment {owner}/{name} not found")


def _own_view(record: StoredDeployment) -> Deployment:
    release = Release(
        record.model, record.version, record.hardware, record.min_instances, record.max_instances, record.input_defaults
    )
    return Deployment(record.tenant, record.name, release, record.number, record.released_ms / 1000)


def _catalog_view(resolved: Resolved) -> Deployment:
    owner, _, name = (resolved.deployment or "").partition("/")
    release = Release(resolved.model.name, resolved.version.id, CATALOG_HARDWARE, 0, 0)
    return Deployment(owner, name, release, 1, resolved.version.created_at.timestamp())


def _now_ms() -> int:
    return int(time.time() * 1000)
