"""Trainings: a tenant's training of a trainable catalog version, run on a Replicate-protocol upstream into a
model of the operator's account. A training is kept as a prediction record of kind TRAINING, so that polling,
cancel, client webhooks and metering treat it as they treat predictions; it has its own tenant index."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, Route, TargetKind
from gateway.errors import InvalidInput, InvalidVersion, OverLimit
from gateway.keys import KeyRecord
from gateway.limits import Admission
from gateway.predictions.records import new_prediction_id, webhook_fields
from gateway.predictions.tracking import Tracker
from gateway.providers import Provider, TrainingRequest
from gateway.status import Status
from gateway.store import TRAINING, PredictionStore, StoredPrediction
from gateway.timestamps import timestamp
from gateway.validation import check_nesting

# A destination as Replicate takes it: lowercase owner and name.
_DESTINATION = re.compile(r"^(?P<owner>[a-z0-9][a-z0-9_.-]*)/(?P<name>[a-z0-9][a-z0-9_.-]*)$")
_TENANT_TAG_HEX = 12  # the tenant's part of an upstream model name: a digest, safe in names, and not the name


@dataclass(frozen=True)
class TrainingOptions:
    """What a training create asks for besides the version."""

    destination: str
    input: dict[str, Any]
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None


def upstream_destination(owner: str, tenant: str, destination: str) -> str:
    """The upstream model a tenant's `owner/name` destination is trained into: `<owner>/<tag>--<d owner>--<d
    name>` in the operator's account `owner`, `tag` a digest of the tenant, so that tenants never share a model."""
    match = _DESTINATION.match(destination)
    if match is None:
        problem = {"type": "format", "field": "destination", "description": "destination must be a lowercase owner/name"}
        raise InvalidInput([problem])
    tag = hashlib.sha256(tenant.encode()).hexdigest()[:_TENANT_TAG_HEX]
    return f"{owner}/{tag}--{match['owner']}--{match['name']}"


def public_output(output: Any, upstream: str, destination: str) -> Any:
    """A training's output as the tenant sees it: the new version under the tenant's destination."""
    if not isinstance(output, dict) or not isinstance(output.get("version"), str):
        return output
    model, _, version = output["version"].rpartition(":")
    return {**output, "version": f"{destination}:{version}"} if model == upstream else output


class Trainings:
    def __init__(
        self,
        catalog: Catalog,
        store: PredictionStore,
        providers: dict[str, Provider],
        tracker: Tracker,
        *,
        admit: Callable[[KeyRecord, StoredPrediction], Awaitable[Admission]],
        abandon: Callable[[StoredPrediction], Awaitable[None]],
        check_webhook: Callable[[str], Awaitable[None]],
        follow_up_after: float,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._providers = providers
        self._tracker = tracker
        self._admit = admit
        self._abandon = abandon  # gives back the pre-charge and removes the record
        self._check_webhook = check_webhook
        self._follow_up_after = follow_up_after

    async def create(self, key: KeyRecord, model: str, version: str, options: TrainingOptions) -> StoredPrediction:
        """Check, record (with the limits check), then start upstream; a failed start leaves no record."""
        route = self._route(key, model, version)
        check_nesting(options.input)  # the trainer's input is its own to check, but it is stored and serialised here
        owner = self._catalog.providers[route.provider].training_destination_owner
        assert owner is not None  # `_route` picks only providers that run trainings
        upstream = upstream_destination(owner, key.tenant, options.destination)
        if options.webhook:
            await self._check_webhook(options.webhook)
        record = _new_record(key, model, version, route, options, upstream)
        admission = await self._admit(key, record)
        reply = await self._store.insert(
            record, follow_up_ms=record.created_ms + int(self._follow_up_after * 1000), admit=admission.queue
        )
        try:
            admission.verdict(reply)
        except OverLimit:
            await self._store.delete(record)
            raise
        try:
            request = TrainingRequest(*_upstream_version(route, model), upstream, options.input)
            started = await self._providers[route.provider].create_training(request)
        except Exception:  # the tenant gets an error: no training may remain, nor its pre-charge
            await self._abandon(record)
            raise
        return await self._tracker.apply(record, started)

    def _route(self, key: KeyRecord, model: str, version: str) -> Route:
        """The first of the version's routes that runs trainings; InvalidVersion (422) for a version the key may
        not use or that cannot be trained."""
        resolved = self._catalog.resolve_permitted(model, version, key.allows)
        if not resolved.version.trainable:
            raise InvalidVersion(f"Version {version} of model {model} cannot be trained")
        providers = self._catalog.providers
        for route in resolved.routes:
            if route.kind is TargetKind.VERSION and providers[route.provider].training_destination_owner:
                return route
        raise InvalidVersion(f"Version {version} of model {model} cannot be trained")


def _upstream_version(route: Route, model: str) -> tuple[str, str]:
    """The upstream model and version id of a version route (`owner/name:id`, or a bare id of the same model)."""
    upstream_model, _, version = route.target.rpartition(":")
    return upstream_model or model, version


def _new_record(
    key: KeyRecord, model: str, version: str, route: Route, options: TrainingOptions, upstream: str
) -> StoredPrediction:
    created_ms = int(time.time() * 1000)
    training_id = new_prediction_id()
    doc: dict[str, Any] = {
        "id": training_id,
        "model": model,
        "version": version,
        "input": options.input,
        "logs": "",
        "error": None,
        "status": Status.STARTING.value,
        "created_at": timestamp(created_ms / 1000),
        "source": "api",
        "destination": options.destination,  # kept to show the output under; not a key of the public document
        "upstream_destination": upstream,
    }
    doc.update(webhook_fields(options.webhook, options.webhook_events_filter))
    return StoredPrediction(
        id=training_id,
        tenant=key.tenant,
        key_id=key.key_id,
        provider=route.provider,
        route=route.label,
        upstream_id="",
        status=Status.STARTING,
        doc=doc,
        created_ms=created_ms,
        refreshed_at=created_ms / 1000,
        kind=TRAINING,
    )
