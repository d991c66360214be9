"""Create, read, list and cancel predictions. Every state change goes through the store's compare-and-set."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.catalog import Catalog, Resolved, Route, TargetKind
from gateway.cursors import window
from gateway.errors import GatewayError, InvalidVersion, NotFound, UpstreamUnavailable
from gateway.events import Events
from gateway.keys import KeyRecord
from gateway.metrics import Metrics
from gateway.outputs import hide
from gateway.providers import CreateRequest, Provider, UpstreamPrediction
from gateway.providers.base import WEBHOOK_EVENTS
from gateway.schemas import Schemas
from gateway.state import Status
from gateway.store import IndexEntry, PredictionStore, StoredPrediction
from gateway.timestamps import parse_timestamp, timestamp

if TYPE_CHECKING:
    from gateway.dispatch import SlotDispatcher

# (tenant, input, for a server next to the gateway?) -> the input with the gateway's file URLs made fetchable
ResolveFiles = Callable[[str, dict[str, Any], bool], Awaitable[dict[str, Any]]]

logger = logging.getLogger(__name__)
PAGE_SIZE = 100
_WAIT_TICK_SECONDS = 0.5  # a waiter re-reads at least this often, in case an event was missed
_REFRESH_HOLD_MS = 60_000  # longest an upstream read may take before another process may try


def new_prediction_id() -> str:
    """26 lowercase base32 characters, like Replicate's (and Cog's recommendation)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


@dataclass(frozen=True)
class CreateOptions:
    """What a create request asks for besides the version: the input and delivery preferences."""

    input: dict[str, Any]
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None


@dataclass(frozen=True)
class Page:
    predictions: list[StoredPrediction]
    next_cursor: str | None
    previous_cursor: str | None


class Predictions:
    def __init__(
        self,
        catalog: Catalog,
        store: PredictionStore,
        schemas: Schemas,
        providers: dict[str, Provider],
        *,
        refresh_after: float,
        webhook_url: Callable[[str, bool], str | None],
        resolve_files: ResolveFiles,
        metrics: Metrics,
        events: Events,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._schemas = schemas
        self._providers = providers
        self._refresh_after = refresh_after
        self._webhook_url = webhook_url
        self._resolve_files = resolve_files
        self._metrics = metrics
        self._events = events
        self._refreshing: dict[str, asyncio.Task[StoredPrediction]] = {}
        self.dispatchers: dict[str, SlotDispatcher] = {}  # per slot-limited provider, wired by the services

    async def create(self, key: KeyRecord, resolved: Resolved, options: CreateOptions) -> StoredPrediction:
        """Record first, then dispatch upstream: two store round trips, and no upstream run without a record."""
        if not key.allows(resolved.model.name, resolved.version.id):
            raise InvalidVersion()
        prepared = resolved.prepare_input(options.input)
        validator = await self._schemas.validator(resolved)
        validator.validate(prepared)
        record = _new_record(key, resolved, prepared, options)
        await self._store.insert(record)
        try:
            started = await self._start(record, resolved, prepared)
        except Exception:  # the tenant gets an error, so no prediction may remain
            await self._store.delete(record)
            raise
        self._metrics.prediction_created(resolved.model.name, record.provider)
        return started

    async def get(self, key: KeyRecord, prediction_id: str) -> StoredPrediction:
        """From Redis; a stale, unfinished record is refreshed from the upstream once for all concurrent readers."""
        record = await self._owned(key, prediction_id)
        if self._stale(record):
            record = await self.refresh(record)
        return record

    async def wait(self, record: StoredPrediction, seconds: float, gone: Callable[[], Awaitable[bool]]) -> StoredPrediction:
        """The prediction once finished, or as it stands after `seconds` (or when the client `gone`).

        Woken by change events from any gateway process; between them, a stale record is refreshed upstream."""
        deadline = time.monotonic() + seconds
        with self._events.watching(record.id) as changed:
            while not record.status.terminal and not await gone():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, _WAIT_TICK_SECONDS))
                record = await self._store.get(record.id) or record
                if self._stale(record):
                    record = await self.refresh(record)
        return record

    async def on_upstream_webhook(self, prediction_id: str, payload: Any, authorization: str | None) -> None:
        """An upstream reported a change: trust its payload if its adapter can, else re-read it upstream."""
        record = await self._store.get(prediction_id)
        if record is None or not record.upstream_id:
            return
        provider = self._providers[record.provider]
        reported = provider.parse_webhook(payload, record.upstream_id, authorization)
        if reported is None:
            if not record.status.terminal:
                await self.refresh(record)
            return
        await self._apply(record, reported)
        dispatcher = self.dispatchers.get(record.provider)
        if dispatcher is not None and reported.status.terminal:
            await dispatcher.release(record.upstream_id)

    async def find(self, prediction_id: str) -> StoredPrediction:
        """Any tenant's prediction, for callers that hold a capability for it (an output link)."""
        record = await self._store.get(prediction_id)
        if record is None:
            raise NotFound("The requested prediction does not exist")
        return record

    async def claimed(self, prediction_id: str, upstream_id: str) -> StoredPrediction | None:
        """A dispatcher picked this queued prediction for `upstream_id`; None if it should not run any more."""
        record = await self._store.get(prediction_id)
        if record is None or record.status.terminal:
            return None
        return await self._apply(record, UpstreamPrediction(id=upstream_id, status=Status.STARTING))

    async def create_request(self, record: StoredPrediction, server: str) -> CreateRequest:
        route = Route(record.provider, TargetKind.SERVER, "")
        upstream_input = await self._resolve_files(record.tenant, record.doc["input"], True)
        return CreateRequest(record.id, record.doc["model"], route, upstream_input, self._webhook_url(record.id, True), server)

    async def settle(self, prediction_id: str, upstream: UpstreamPrediction) -> Status | None:
        """Apply a state reported for a queued prediction (accepted by a server, or failed on the way);
        returns the status now stored, which is terminal already if it was canceled meanwhile."""
        record = await self._store.get(prediction_id)
        return None if record is None else (await self._apply(record, upstream)).status

    async def refresh(self, record: StoredPrediction) -> StoredPrediction:
        task = self._refreshing.get(record.id)
        if task is None:
            task = asyncio.create_task(self._refresh(record))
            self._refreshing[record.id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(record.id, None))
        return await asyncio.shield(task)

    async def list(
        self, key: KeyRecord, cursor: str | None, created_after: float | None, created_before: float | None
    ) -> Page:
        """The tenant's predictions, newest first, a page at a time; the time bounds are exclusive."""
        # Whole milliseconds that keep both bounds exclusive: created_ms < before_ms and created_ms > after_ms.
        before_ms = math.ceil(created_before * 1000) if created_before is not None else None
        after_ms = math.floor(created_after * 1000) if created_after is not None else None

        async def older(edge: IndexEntry | None, count: int) -> list[IndexEntry]:
            return await self._store.older(key.tenant, edge, count, before_ms=before_ms, after_ms=after_ms)

        async def newer(edge: IndexEntry, count: int) -> list[IndexEntry]:
            return await self._store.newer(key.tenant, edge, count, before_ms=before_ms)

        page = await window(cursor, PAGE_SIZE, older, newer)
        return Page(await self._store.load(page.entries), page.next_cursor, page.previous_cursor)

    async def cancel(self, key: KeyRecord, prediction_id: str) -> StoredPrediction:
        record = await self._owned(key, prediction_id)
        if record.status.terminal:
            return record
        provider = self._providers.get(record.provider)
        upstream = None
        if record.upstream_id and provider is not None and provider.capabilities.cancel:
            upstream = await provider.cancel(record.upstream_id)
        if upstream is None or not upstream.status.terminal:
            upstream = UpstreamPrediction(id=record.upstream_id, status=Status.CANCELED)
        return await self._apply(record, upstream)

    async def _owned(self, key: KeyRecord, prediction_id: str) -> StoredPrediction:
        record = await self._store.get(prediction_id)
        if record is None or record.tenant != key.tenant:
            raise NotFound("The requested prediction does not exist")
        return record

    def _stale(self, record: StoredPrediction) -> bool:
        provider = self._providers.get(record.provider)
        return (
            not record.status.terminal
            and bool(record.upstream_id)
            and provider is not None
            and provider.capabilities.get_by_id
            and time.time() - record.refreshed_at >= self._refresh_after
        )

    async def _refresh(self, record: StoredPrediction) -> StoredPrediction:
        if not await self._store.claim_refresh(record.id, _REFRESH_HOLD_MS):  # another gateway process is on it
            return record
        try:
            upstream = await self._providers[record.provider].get(record.upstream_id)
            return await self._apply(record, upstream)
        except GatewayError as exc:
            logger.warning("refresh of prediction %s failed: %s", record.id, exc.detail)
            return record
        finally:
            await self._store.release_refresh(record.id)

    async def _start(self, record: StoredPrediction, resolved: Resolved, prepared: dict[str, Any]) -> StoredPrediction:
        """Queue the prediction for a server slot, or create it upstream now."""
        dispatcher = self.dispatchers.get(record.provider)
        if dispatcher is not None:  # queued: it stays `starting` until a server slot takes it
            await dispatcher.submit(record.id)
            return record
        upstream_input = await self._resolve_files(record.tenant, prepared, False)
        return await self._apply(record, await self._dispatch(record, resolved, upstream_input))

    async def _dispatch(self, record: StoredPrediction, resolved: Resolved, prepared: dict[str, Any]) -> UpstreamPrediction:
        route = resolved.routes[0]
        provider = self._providers.get(route.provider)
        if provider is None:
            raise UpstreamUnavailable("The upstream provider for this model is not available")
        request = CreateRequest(record.id, resolved.model.name, route, prepared, self._webhook_url(record.id, False))
        return await provider.create(request)

    async def _apply(self, record: StoredPrediction, upstream: UpstreamPrediction) -> StoredPrediction:
        if _out_of_order(record, upstream):
            return record
        now = time.time()
        provider = self._providers.get(record.provider)
        outputs = None
        if provider is not None and provider.capabilities.remote_outputs:
            public_output, outputs = hide(upstream.output)
            upstream = dataclasses.replace(upstream, output=public_output)
        doc = _merged(record.doc, upstream, now)
        status = Status(doc["status"])
        if await self._store.apply(record.id, status, doc, now, upstream.id, outputs):
            if status.terminal:  # the compare-and-set let exactly one writer get here
                self._metrics.prediction_finished(doc["model"], record.provider, status)
            changes = {"status": status, "doc": doc, "upstream_id": upstream.id or record.upstream_id, "refreshed_at": now}
            return dataclasses.replace(record, **changes, upstream_outputs=tuple(outputs or record.upstream_outputs))
        current = await self._store.get(record.id)  # another writer moved it on first
        return current or record


def _new_record(key: KeyRecord, resolved: Resolved, prepared: dict[str, Any], options: CreateOptions) -> StoredPrediction:
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
        "created_at": timestamp(now),
        "started_at": None,
        "completed_at": None,
        "data_removed": False,
        "source": "api",
    }
    if resolved.deployment:
        doc["deployment"] = resolved.deployment
    if options.webhook:
        doc["webhook"] = options.webhook
        doc["webhook_events_filter"] = options.webhook_events_filter or list(WEBHOOK_EVENTS)
    return StoredPrediction(
        id=prediction_id,
        tenant=key.tenant,
        key_id=key.key_id,
        provider=resolved.routes[0].provider,
        upstream_id="",
        status=Status.STARTING,
        doc=doc,
        created_ms=created_ms,
        refreshed_at=now,
    )


def _out_of_order(record: StoredPrediction, upstream: UpstreamPrediction) -> bool:
    """A progress report older than what is stored (webhooks may arrive out of order): logs only grow."""
    stale_progress = upstream.status is Status.PROCESSING and record.status is Status.PROCESSING
    return stale_progress and len(upstream.logs or "") < len(record.doc.get("logs") or "")


def _merged(doc: dict[str, Any], upstream: UpstreamPrediction, now: float) -> dict[str, Any]:
    """The public document updated with what the upstream reported; ids, model and version stay ours."""
    merged = {**doc, "status": upstream.status.value, "output": upstream.output, "error": upstream.error}
    if upstream.logs is not None:
        merged["logs"] = upstream.logs
    if upstream.status is not Status.STARTING:
        merged["started_at"] = doc.get("started_at") or _normalised(upstream.started_at) or timestamp(now)
    if upstream.status.terminal:
        merged["completed_at"] = _normalised(upstream.completed_at) or timestamp(now)
        created = parse_timestamp(doc["created_at"]) or now
        merged["metrics"] = {**(upstream.metrics or {}), "total_time": round(now - created, 6)}
    elif upstream.metrics:
        merged["metrics"] = upstream.metrics
    return merged


def _normalised(value: str | None) -> str | None:
    epoch = parse_timestamp(value)
    return None if epoch is None else timestamp(epoch)
