"""Handing a recorded prediction to an upstream: routes tried in order, failover, and lost answers found out.

A create goes to the first route that takes it. A route that failed without starting anything upstream (no
connection, an error answer) hands the prediction to the next. A route that may have started it (the request
went out and no usable answer came back) is never followed by another, which could run the prediction twice:
the upstream is asked whether it has the prediction, which it is then given; when it surely has none, the next
route takes over; when it cannot tell, the prediction is kept as sent and asked about again later
(`confirm`, from the follow-ups), until the upstream says or the gateway gives up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from gateway.catalog import Resolved, Route
from gateway.errors import Delivery, StoreError, UpstreamError, UpstreamUnavailable
from gateway.metrics import Metrics
from gateway.predictions.requests import UpstreamRequests
from gateway.predictions.tracking import Tracker
from gateway.providers import CreateRequest, Provider, UpstreamPrediction
from gateway.routing import Breakers, Ticket
from gateway.status import Status
from gateway.store import PredictionStore, StoredPrediction

logger = logging.getLogger(__name__)
# Pauses between lookups of a create whose answer was lost: the upstream may still be storing it.
_LOOKUP_PAUSES = (0.0, 0.5, 1.5)
# Upstream clocks differ from ours: a lookup accepts predictions created this long before the record.
_CLOCK_SLACK_SECONDS = 60.0
# Besides its routes' upstream calls, a create spends this long at most (input files, the store).
_CREATE_MARGIN_SECONDS = 10.0
# How long a prediction no upstream has confirmed is asked about before it is failed.
UNCONFIRMED_SECONDS = 300.0
NEVER_TAKEN = "The upstream provider did not confirm that it took the prediction"
ALL_ROUTES_OPEN = "Every upstream provider of this model is failing; the gateway is giving them a rest, retry shortly"


class Dispatch:
    def __init__(
        self,
        providers: dict[str, Provider],
        store: PredictionStore,
        tracker: Tracker,
        requests: UpstreamRequests,
        metrics: Metrics,
        breakers: Breakers,
        retry_after: int,
        timeouts: Mapping[str, float],
    ) -> None:
        self._timeouts = timeouts  # each provider's limit on one call: a lookup takes no longer
        self._breakers = breakers
        self._retry_after = retry_after  # seconds a client is told to wait when every route's breaker is open
        self._providers = providers
        self._store = store
        self._tracker = tracker
        self._requests = requests
        self._metrics = metrics

    async def send(self, record: StoredPrediction, resolved: Resolved, routes: Sequence[Route]) -> StoredPrediction:
        """The record once a route has taken the prediction (or kept it, unconfirmed); the last route's error when
        none did. `record` was written for `routes[0]`. Routes whose circuit breaker is open are passed over."""
        failure: UpstreamError = UpstreamUnavailable(ALL_ROUTES_OPEN, retry_after=self._retry_after)
        for route in routes:
            ticket = await self._admit(route)
            if ticket is None:
                continue
            if route.label != record.route:
                record = await self._reroute(record, route)
                if record.upstream_id:
                    return record
            try:
                started = await self._start(record, resolved, route)
            except UpstreamError as exc:
                if exc.delivery is Delivery.REJECTED:  # the upstream answered: the route works
                    await self._report(ticket, None)
                    raise
                await self._report(ticket, exc.detail)
                if exc.delivery is Delivery.UNKNOWN:
                    found = await self._after_lost_answer(record, exc)
                    if found is not None:
                        return found
                self._metrics.route_failed(route.provider, exc.delivery.value)
                logger.warning("route %s failed (%s): %s", route.label, exc.delivery.value, exc.detail)
                failure = exc
            else:
                await self._report(ticket, None)
                return started
        raise failure

    @staticmethod
    def longest(timeouts: Sequence[float]) -> float:
        """The longest a create on routes with these upstream timeouts can take: each route's create, then its
        lookups should the answer be lost, and the margin."""
        lookups = len(_LOOKUP_PAUSES)
        return sum(t * (1 + lookups) + sum(_LOOKUP_PAUSES) for t in timeouts) + _CREATE_MARGIN_SECONDS

    def unconfirmed(self, record: StoredPrediction) -> bool:
        """Whether the record was sent to an upstream that never said whether it took it: no upstream id, and
        not waiting in a queue of the gateway's own."""
        provider = self._providers.get(record.provider)
        return (
            provider is not None
            and not provider.capabilities.slots
            and not record.upstream_id
            and not record.provisional
            and not record.status.terminal
        )

    async def confirm(self, record: StoredPrediction) -> StoredPrediction:
        """Ask the upstream again about an unconfirmed prediction: what it started is adopted; when it still shows
        none after UNCONFIRMED_SECONDS, the prediction is failed (it never ran, as far as anyone can tell)."""
        try:
            found = await self.find(record)
        except UpstreamError as exc:
            logger.info("prediction %s: the upstream cannot be asked yet (%s)", record.id, exc.detail)
            found = None
        if found is not None:
            return await self._tracker.apply(record, found)
        if time.time() - record.created_ms / 1000 < UNCONFIRMED_SECONDS:
            return record
        return await self._tracker.apply(record, UpstreamPrediction(id="", status=Status.FAILED, error=NEVER_TAKEN))

    async def cancel_strays(self, record: StoredPrediction) -> None:
        """Cancel what another upstream started for the prediction after its create had moved on (a route whose
        answer was lost, and which took the create after every lookup had shown nothing)."""
        for name, provider in self._providers.items():
            if name == record.provider or provider.capabilities.slots:
                continue
            try:
                stray = await self.find(dataclasses.replace(record, provider=name))
                if stray is not None and not stray.status.terminal:
                    await provider.cancel(stray.id)
                    logger.warning("prediction %s: canceled the duplicate %s started late on %s", record.id, stray.id, name)
            except UpstreamError as exc:
                logger.info("prediction %s: %s not searched for a duplicate (%s)", record.id, name, exc.detail)

    async def find(self, record: StoredPrediction) -> UpstreamPrediction | None:
        """The upstream's prediction for the record, looked up by the webhook it was given; an UpstreamError when
        the upstream cannot be asked (or has no webhook to go by)."""
        webhook = self._requests.webhook(record)
        if webhook is None:
            raise UpstreamError("The prediction was sent without a webhook, by which alone it could be found")
        parts = urlsplit(webhook)
        callback = f"{parts.path}?{parts.query}"
        lookup = self._providers[record.provider].find(callback, record.created_ms / 1000 - _CLOCK_SLACK_SECONDS)
        try:
            return await asyncio.wait_for(lookup, self._timeouts.get(record.provider))
        except TimeoutError:
            raise UpstreamError("The upstream provider took too long to look the prediction up") from None

    async def _after_lost_answer(self, record: StoredPrediction, error: UpstreamError) -> StoredPrediction | None:
        """The record with the upstream's prediction when it has one; None when it surely has none. When it
        cannot tell, the prediction stays with this route, unconfirmed."""
        lookup_error: UpstreamError | None = None
        for pause in _LOOKUP_PAUSES:  # the upstream may still be storing what it took: look more than once
            await asyncio.sleep(pause)
            try:
                found = await self.find(record)
            except UpstreamError as exc:
                lookup_error = exc
                continue
            if found is not None:
                return await self._tracker.apply(record, found)
        if lookup_error is None:  # every lookup answered, and none showed the prediction
            return None
        logger.warning(
            "prediction %s: the create's answer was lost (%s) and the upstream cannot say whether it took it (%s); "
            "kept unconfirmed",
            record.id,
            error.detail,
            lookup_error.detail,
        )
        await self._store.retain(record.id)
        return record

    async def _admit(self, route: Route) -> Ticket | None:
        """The breaker's ticket for `route`, None while it is open. A store failure lets the request through: a
        breaker that cannot be read must not stop the traffic it protects."""
        try:
            return await self._breakers.admit(route.label)
        except StoreError:
            return Ticket(route.label)

    async def _report(self, ticket: Ticket, failure: str | None) -> None:
        """Tell the route's breaker how its request went (`failure`: why it failed, None when it did not)."""
        try:
            if failure is None:
                await self._breakers.succeeded(ticket)
            else:
                await self._breakers.failed(ticket, failure)
        except StoreError as exc:
            logger.warning("route %s: the circuit breaker was not updated (%s)", ticket.route, exc.detail)

    async def _reroute(self, record: StoredPrediction, route: Route) -> StoredPrediction:
        """The record moved to `route`; as stored when another writer gave it an upstream prediction first."""
        if await self._store.reroute(record.id, route.provider, route.label):
            return dataclasses.replace(record, provider=route.provider, route=route.label)
        return await self._store.get(record.id) or record

    async def _start(self, record: StoredPrediction, resolved: Resolved, route: Route) -> StoredPrediction:
        """Create the prediction upstream, or queue it for a server slot (it stays `starting` until one takes it)."""
        provider = self._providers[route.provider]
        if provider.capabilities.slots:
            request = CreateRequest(record.id, resolved.model.name, route, record.doc["input"], tenant=record.tenant)
        else:
            request = await self._requests.build(record, route, local=False)
        started = await provider.create(request)
        if started is None:  # queued: nothing to apply yet, but the record must outlive the queue
            await self._store.retain(record.id)
            return record
        return await self._tracker.apply(record, started)
