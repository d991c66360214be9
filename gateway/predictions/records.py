"""New prediction records: the gateway's own ids and the public document a create starts from."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Resolved, Route
from gateway.deliveries.events import DEFAULT_EVENTS
from gateway.keys import KeyRecord
from gateway.status import Status
from gateway.store import StoredPrediction
from gateway.timestamps import timestamp


@dataclass(frozen=True)
class CreateOptions:
    """What a create request asks for besides the version: the input and delivery preferences."""

    input: dict[str, Any]
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    cancel_after: float | None = None  # seconds from creation after which the prediction is cancelled


def new_prediction_id() -> str:
    """26 lowercase base32 characters, like Replicate's (and Cog's recommendation)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


def webhook_fields(webhook: str | None, events_filter: list[str] | None) -> dict[str, Any]:
    """A new record's `webhook` and `webhook_events_filter` (the default events when none are asked for); none
    without a webhook."""
    if not webhook:
        return {}
    return {"webhook": webhook, "webhook_events_filter": events_filter or [event.value for event in DEFAULT_EVENTS]}


def new_record(
    key: KeyRecord,
    resolved: Resolved,
    route: Route,
    prepared: dict[str, Any],
    options: CreateOptions,
    *,
    streams: bool = False,
) -> StoredPrediction:
    """The record of a create that `route` will serve."""
    created_ms = int(time.time() * 1000)  # `created_at` and the index score are the same instant
    now = created_ms / 1000
    prediction_id = new_prediction_id()
    doc: dict[str, Any] = {
        "id": prediction_id,
        "model": resolved.model.name,
        "version": resolved.version.id,
        "input": dict(sorted(prepared.items())),
        "output": None,
        "logs": "",
        "error": None,
        "status": Status.STARTING.value,
        "created_at": timestamp(now),  # `started_at`, `completed_at` and `metrics` come once they have a value
        "data_removed": False,
        "source": "api",
    }
    if resolved.deployment:
        doc["deployment"] = resolved.deployment
    if options.cancel_after is not None:
        doc["deadline"] = timestamp((created_ms + options.cancel_after * 1000) / 1000)
    doc.update(webhook_fields(options.webhook, options.webhook_events_filter))
    return StoredPrediction(
        id=prediction_id,
        tenant=key.tenant,
        key_id=key.key_id,
        provider=route.provider,
        route=route.label,
        upstream_id="",
        status=Status.STARTING,
        doc=doc,
        created_ms=created_ms,
        refreshed_at=now,
        streams=streams,
    )
