"""Create, read, list, wait on and cancel predictions; every change goes through the tracker's compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio.client import Pipeline

from gateway.catalog import Catalog, Reference, Resolved
from gateway.cursors import encode_cursor, window
from gateway.errors import GatewayError, InvalidVersion, NotFound, OverLimit, UpstreamError, UpstreamUnavailable
from gateway.keys import KeyRecord
from gateway.limits import Admission, ReadCount
from gateway.metrics import Metrics
from gateway.predictions.dispatch import Dispatch
from gateway.predictions.records import CreateOptions, new_record
from gateway.predictions.requests import UpstreamRequests
from gateway.predictions.tracking import Tracker
from gateway.providers import Callback, Provider, UpstreamPrediction, UpstreamStream
from gateway.routing import Breakers, Router
from gateway.schemas import Schemas
from gateway.status import Status
from gateway.store import PREDICTION, IndexEntry, PredictionStore, StoredPrediction
from gateway.validation import check_nesting
from gateway.waiters import Waiters

logger = logging.getLogger(__name__)
PAGE_SIZE = 100
# A waiter is woken by change events from any process; it re-reads its record at least this often besides, in
# case an event was missed (a lost subscription wakes every waiter anyway). Each re-read costs a Redis read per
# waiter or stream: at 0.5 s, 2,000 waiting requests kept a CPU busy (bench/concurrent_waits.py), and at 1 s so did
# 2,000 open streams (bench/sse_memory.py).
_WAIT_TICK_SECONDS = 5.0
# A stale record is refreshed upstream when it falls due, but no more often than this per waiter (another process
# may hold the refresh, leaving the record stale a little longer).
_STALE_RECHECK_SECONDS = 0.5
# How long one process's claim on re-reading a prediction upstream keeps the others from doing it too. A slower
# read may be repeated by another process, which costs little; a claim leaked by an outage or a crash (its
# release failed) holds up refreshes only this long.
_REFRESH_HOLD_MS = 5_000
_READ_REFRESH_SECONDS = 1.0  # a GET answers the stored state rather than wait longer for a slow upstream


async def _present() -> bool:
    return False


def _naming(remember: Callable[[Pipeline, str], None], prediction_id: str) -> Callable[[Pipeline], None]:
    return lambda pipe: remember(pipe, prediction_id)


def _names_another(callback: Callback, record: StoredPrediction) -> bool:
    """Whether a webhook reports on an upstream prediction other than the record's (its payload's `id` is neither
    the upstream id nor, as a Cog server's is, the gateway's own id)."""
    reported = callback.payload.get("id") if isinstance(callback.payload, dict) else None
    return isinstance(reported, str) and reported not in (record.upstream_id, record.id)


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
        tracker: Tracker,
        requests: UpstreamRequests,
        waiters: Waiters,
        metrics: Metrics,
        *,
        resolve: Callable[[KeyRecord, Reference], Awaitable[Resolved]],
        check_webhook: Callable[[str], Awaitable[None]],
        admit: Callable[[KeyRecord, StoredPrediction], Awaitable[Admission]],
        release: Callable[[StoredPrediction], Awaitable[None]],
        refresh_after: float,
        page_bytes: int,
        follow_up_after: float,
        breakers: Breakers,
        breaker_retry_after: int,
    ) -> None:
        timeouts = {name: config.timeout for name, config in catalog.providers.items()}
        self._catalog = catalog
        self._store = store
        self._schemas = schemas
        self._providers = providers
        self._tracker = tracker
        self._requests = requests
        self._waiters = waiters
        self._metrics = metrics
        self._resolve = resolve  # what a key's reference runs (its tenant's own deployments first)
        self._check_webhook = check_webhook  # raises InvalidInput for a webhook URL that may not be called
        self._admit = admit  # a create's limits check and pre-charge, queued with its first write
        self._release = release  # gives back a pre-charge
        self._refresh_after = refresh_after
        self._page_bytes = page_bytes
        self._follow_up_after = follow_up_after
        self._refreshing: dict[str, asyncio.Task[StoredPrediction]] = {}
        self._router = Router(providers)
        self._dispatch = Dispatch(providers, store, tracker, requests, metrics, breakers, breaker_retry_after, timeouts)

    async def create(
        self,
        key: KeyRecord,
        reference: Reference,
        options: CreateOptions,
        remember: Callable[[Pipeline, str], None] | None = None,
    ) -> StoredPrediction:
        """Check limits and record first, then dispatch upstream: two store round trips (the limits check rides
        with the first), and no upstream run without a record and a pre-charge.

        `remember(pipe, prediction id)` queues more writes with the record's (an idempotency key naming it)."""
        resolved = await self._resolve(key, reference)
        if not key.allows(resolved.model.name, resolved.version.id):
            raise InvalidVersion()
        check_nesting(options.input)
        prepared = resolved.prepare_input(options.input)
        validator = await self._schemas.validator(resolved)
        validator.validate(prepared)
        await validator.check_urls(prepared)
        if options.webhook:
            await self._check_webhook(options.webhook)
        routes = self._router.candidates(resolved.routes)
        if not routes:
            raise UpstreamUnavailable("The upstream provider for this model has no credentials configured")
        record = new_record(key, resolved, routes[0], prepared, options, streams=await self._schemas.streams(resolved))
        admission = await self._admit(key, record)
        reply = await self._store.insert(
            record,
            follow_up_ms=record.created_ms + int(self._follow_up_after * 1000),
            deadline_ms=None if options.cancel_after is None else record.created_ms + int(options.cancel_after * 1000),
            admit=admission.queue,
            remember=None if remember is None else _naming(remember, record.id),
        )
        try:
            admission.verdict(reply)
        except OverLimit:
            await self._store.delete(record)
            raise
        try:
            started = await self._dispatch.send(record, resolved, routes)
        except Exception:  # the tenant gets an error, so no prediction may remain, nor its pre-charge
            await self.abandon(record)
            raise
        self._metrics.prediction_created(resolved.model.name, started.provider)
        return started

    def longest_create(self) -> float:
        """The longest any create of the catalog can take (`Dispatch.longest` over each version's routes)."""
        providers = self._catalog.providers
        lists = self._catalog.route_lists()
        return max(Dispatch.longest([providers[r.provider].timeout for r in routes]) for routes in lists or [()])

    def unconfirmed(self, record: StoredPrediction) -> bool:
        """Whether the record was sent to an upstream that never said whether it took it."""
        return self._dispatch.unconfirmed(record)

    async def confirm(self, record: StoredPrediction) -> StoredPrediction:
        """Ask the upstream again about an unconfirmed prediction (`Dispatch.confirm`)."""
        return await self._dispatch.confirm(record)

    async def recover(self, record: StoredPrediction) -> StoredPrediction | None:
        """A provisional record whose create never finished: the upstream's prediction when the create reached it
        (the record then takes it over), else None."""
        provider = self._providers.get(record.provider)
        if provider is None or provider.capabilities.slots:
            return None
        try:
            found = await self._dispatch.find(record)
        except UpstreamError:
            return None
        return None if found is None else await self._tracker.apply(record, found)

    async def abandon(self, record: StoredPrediction) -> None:
        """Undo a create that never reached its upstream: give back its pre-charge, then remove its record."""
        await self._release(record)
        await self._store.delete(record)

    async def find(self, prediction_id: str) -> StoredPrediction | None:
        """The record, whoever owns it (for background work), provisional ones included."""
        return await self._store.get(prediction_id)

    def pollable(self, record: StoredPrediction) -> bool:
        """Whether the record's upstream can be asked for its state (and holds a prediction to ask about)."""
        provider = self._providers.get(record.provider)
        return bool(record.upstream_id) and provider is not None and provider.capabilities.get_by_id

    async def get(
        self, key: KeyRecord, prediction_id: str, kind: str = PREDICTION, count: ReadCount | None = None
    ) -> StoredPrediction:
        """From Redis (with the read's `count` against the read rates, in the same round trip); a stale, unfinished
        record is refreshed from the upstream once for all concurrent readers."""
        record = await self._owned(key, prediction_id, kind, count)
        if self._stale(record):
            record = await self.refresh(record, within=_READ_REFRESH_SECONDS)
        return record

    @property
    def shutting_down(self) -> bool:
        """Whether the process is shutting down: waits and streams end with what there is."""
        return self._waiters.closed

    async def wait(self, record: StoredPrediction, seconds: float, gone: Callable[[], Awaitable[bool]]) -> StoredPrediction:
        """The prediction once finished, or as it stands after `seconds` (or when the client `gone`)."""
        latest = record
        async for latest in self.watch(record, gone, seconds):  # noqa: B007 (the last one seen is the answer)
            pass
        return latest

    async def watch(
        self,
        record: StoredPrediction,
        gone: Callable[[], Awaitable[bool]] = _present,
        seconds: float = math.inf,
    ) -> AsyncIterator[StoredPrediction]:
        """The record each time it may have changed (and at least every few seconds), until it is finished,
        `seconds` have passed, the client is `gone` or the process shuts down (the waiters are closed).

        Woken by change events from any gateway process. Between them, a record that falls stale is refreshed
        upstream, unless the upstream was given a webhook: it reports itself, and the shared follow-ups poll it
        in case a report is lost. Polling it from every waiter as well would multiply its reads by the waiters
        (thousands of held waits made thousands of upstream reads a second)."""
        deadline = time.monotonic() + seconds
        polls = self._requests.webhook(record) is None
        with self._waiters.watching(record.id) as changed:
            while not record.status.terminal and not self._waiters.closed and not await gone():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                changed.clear()
                until_stale = self._until_stale(record) if polls else math.inf
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, _WAIT_TICK_SECONDS, until_stale))
                record = await self._store.get(record.id) or record
                if polls and self._stale(record) and not self._waiters.closed:
                    record = await self.refresh(record, within=max(deadline - time.monotonic(), 0))
                yield record

    async def on_upstream_webhook(self, prediction_id: str, callback: Callback) -> None:
        """An upstream reported a change: trust its payload if its adapter can, else re-read it upstream."""
        record = await self._store.get(prediction_id)
        if record is None:
            return
        if self.unconfirmed(record):  # the upstream took the create whose answer was lost
            await self.confirm(record)
            return
        if _names_another(callback, record):  # an upstream the create left took it late: a duplicate
            await self._dispatch.cancel_strays(record)
            return
        if not record.upstream_id:
            return
        provider = self._providers[record.provider]
        reported = provider.parse_webhook(callback, record.upstream_id)
        if reported is None:
            if not record.status.terminal:
                await self.refresh(record)
            return
        await self._tracker.apply(record, reported)
        if reported.status.terminal:
            await provider.finished(record.upstream_id)

    async def open_output(self, prediction_id: str, index: int, key_active: Callable[[str], Awaitable[bool]]) -> UpstreamStream:
        """Start reading an output file the upstream keeps, for a caller holding the link to it; the link dies
        with the key that created the prediction."""
        record = await self._store.get(prediction_id)
        if record is None or index >= len(record.upstream_outputs) or not await key_active(record.key_id):
            raise NotFound("The requested output does not exist")
        return await self._providers[record.provider].open_output(record.upstream_outputs[index])

    async def refresh(self, record: StoredPrediction, within: float | None = None) -> StoredPrediction:
        """The record re-read from the upstream, one read for all concurrent callers; as stored when the
        read takes longer than `within` seconds (it goes on for the next reader)."""
        task = self._refreshing.get(record.id)
        if task is None:
            task = asyncio.create_task(self._refresh(record))
            self._refreshing[record.id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(record.id, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), within)
        except TimeoutError:
            return record

    async def list(
        self,
        key: KeyRecord,
        cursor: str | None,
        created_after: float | None,
        created_before: float | None,
        kind: str = PREDICTION,
    ) -> Page:
        """The tenant's records of `kind`, newest first, a page at a time; the time bounds are exclusive."""
        # Whole milliseconds that keep both bounds exclusive: created_ms < before_ms and created_ms > after_ms.
        before_ms = math.ceil(created_before * 1000) if created_before is not None else None
        after_ms = math.floor(created_after * 1000) if created_after is not None else None

        async def older(edge: IndexEntry | None, count: int) -> list[IndexEntry]:
            return await self._store.older(key.tenant, edge, count, before_ms=before_ms, after_ms=after_ms, kind=kind)

        async def newer(edge: IndexEntry, count: int) -> list[IndexEntry]:
            return await self._store.newer(key.tenant, edge, count, before_ms=before_ms, kind=kind)

        page = await window(cursor, PAGE_SIZE, older, newer)
        entries, next_cursor = await self._within_budget(page.entries, page.next_cursor)
        shown = [record for record in await self._store.load(entries) if not record.provisional]
        return Page(shown, next_cursor, page.previous_cursor)

    async def _within_budget(
        self, entries: Sequence[IndexEntry], next_cursor: str | None
    ) -> tuple[Sequence[IndexEntry], str | None]:
        """The newest entries whose documents fit the page's byte budget (at least one), so that large inputs
        cannot make one page of a list hundreds of megabytes; the next page starts after the last one kept."""
        total = 0
        for kept, size in enumerate(await self._store.sizes(entries) if entries else []):
            total += size
            if kept and total > self._page_bytes:
                return entries[:kept], encode_cursor("next", entries[kept - 1])
        return entries, next_cursor

    async def cancel(self, key: KeyRecord, prediction_id: str, kind: str = PREDICTION) -> StoredPrediction:
        return await self.expire(await self._owned(key, prediction_id, kind))

    async def expire(self, record: StoredPrediction, *, upstream_first: bool = True) -> StoredPrediction:
        """Cancel the prediction (a tenant's cancel, or its deadline passing): upstream first, unless the
        upstream has failed to take the cancel for so long that the gateway gives up asking."""
        if record.status.terminal:
            return record
        provider = self._providers.get(record.provider)
        upstream = None
        if upstream_first and record.upstream_id and provider is not None and provider.capabilities.cancel:
            upstream = await provider.cancel(record.upstream_id)
        if upstream is None or not upstream.status.terminal:
            upstream = UpstreamPrediction(id=record.upstream_id, status=Status.CANCELED)
        return await self._tracker.apply(record, upstream)

    async def _owned(self, key: KeyRecord, prediction_id: str, kind: str, count: ReadCount | None = None) -> StoredPrediction:
        """The tenant's own record of `kind`: any other (another tenant's, or a training read as a prediction) is
        not found. A refused `count` raises first."""
        if count is None:
            record = await self._store.get(prediction_id)
        else:
            reply, record = await self._store.get_counted(prediction_id, count.queue)
            count.verdict(reply)
        if record is None or record.tenant != key.tenant or record.provisional or record.kind != kind:
            raise NotFound(f"The requested {kind} does not exist")
        return record

    def _until_stale(self, record: StoredPrediction) -> float:
        """Seconds until the record is due for a refresh (at least _STALE_RECHECK_SECONDS); inf if it never is."""
        if record.status.terminal or not self.pollable(record):
            return math.inf
        return max(record.refreshed_at + self._refresh_after - time.time(), _STALE_RECHECK_SECONDS)

    def _stale(self, record: StoredPrediction) -> bool:
        return not record.status.terminal and self.pollable(record) and time.time() - record.refreshed_at >= self._refresh_after

    async def _refresh(self, record: StoredPrediction) -> StoredPrediction:
        if not await self._store.claim_refresh(record.id, _REFRESH_HOLD_MS):  # another gateway process is on it
            return record
        try:
            self._metrics.upstream_read(record.provider)
            upstream = await self._providers[record.provider].get(record.upstream_id)
            return await self._tracker.apply(record, upstream)
        except GatewayError as exc:
            logger.warning("refresh of prediction %s failed: %s", record.id, exc.detail)
            return record
        finally:
            await self._store.release_refresh(record.id)
