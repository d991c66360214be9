"""OpenAPI documents of versions: from the catalog, else fetched once from the upstream and cached in Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.catalog import Resolved
from gateway.errors import GatewayError
from gateway.providers import Provider
from gateway.store import SchemaStore
from gateway.validation import InputValidator, UrlPolicy

logger = logging.getLogger(__name__)
SCHEMA_CACHE_SECONDS = 24 * 3600

# What the version endpoint shows when neither the catalog nor the upstream has a schema.
PERMISSIVE_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {"schemas": {"Input": {"type": "object", "properties": {}}, "Output": {}}},
}


class Schemas:
    def __init__(self, store: SchemaStore, providers: dict[str, Provider], policy: UrlPolicy) -> None:
        self._store = store
        self._providers = providers
        self._policy = policy
        self._documents: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, InputValidator] = {}
        self._fetching: dict[str, asyncio.Task[dict[str, Any] | None]] = {}

    async def document(self, resolved: Resolved) -> dict[str, Any] | None:
        """The version's OpenAPI document, or None if no source has one."""
        version_id = resolved.version.id
        if resolved.version.openapi_schema is not None:
            return resolved.version.openapi_schema
        if version_id in self._documents:
            return self._documents[version_id]
        if version_id not in self._fetching:  # one fetch for all concurrent callers
            self._fetching[version_id] = asyncio.create_task(self._load(resolved))
        try:
            document = await asyncio.shield(self._fetching[version_id])
        finally:
            self._fetching.pop(version_id, None)
        if document is not None:  # a miss is retried next time: the upstream may have been down
            self._documents[version_id] = document
        return document

    async def validator(self, resolved: Resolved) -> InputValidator:
        """The version's validator; without any schema, one that still refuses unsafe URLs and file inputs."""
        version_id = resolved.version.id
        if version_id not in self._validators:
            document = await self.document(resolved)
            if document is None:
                logger.warning("no schema for version %s: only URLs and file inputs are checked", version_id)
                return InputValidator(PERMISSIVE_SCHEMA, self._policy)
            self._validators[version_id] = InputValidator(document, self._policy)
        return self._validators[version_id]

    async def streams(self, resolved: Resolved) -> bool:
        """Whether the version streams its output: as the catalog says, else when its schema's output is an
        iterator (`x-cog-array-type: iterator`, what Cog writes for a `predict` that yields)."""
        if resolved.version.stream is not None:
            return resolved.version.stream
        return output_streams(await self.document(resolved))

    async def _load(self, resolved: Resolved) -> dict[str, Any] | None:
        cached = await self._store.get(resolved.version.id)
        if cached is not None:
            return cached
        for route in resolved.routes:
            provider = self._providers.get(route.provider)
            if provider is None:
                continue
            try:
                document = await provider.version_schema(resolved.model.name, route)
            except GatewayError as exc:
                logger.warning("schema of %s not available from %s: %s", resolved.version.id, route.provider, exc.detail)
                continue
            if document is not None and isinstance(document.get("components", {}).get("schemas", {}).get("Input"), dict):
                await self._store.put(resolved.version.id, document, SCHEMA_CACHE_SECONDS)
                return document
        return None


def output_streams(document: dict[str, Any] | None) -> bool:
    """Whether an OpenAPI document's `Output` is an iterator, which Replicate serves as a stream."""
    output = (document or {}).get("components", {}).get("schemas", {}).get("Output")
    return isinstance(output, dict) and output.get("type") == "array" and output.get("x-cog-array-type") == "iterator"
