"""Putting client webhooks into the durable delivery stream as predictions change.

`observe` is told of every change once across all gateway processes (by the compare-and-set winner). A
non-terminal change is enqueued at once or dropped: Replicate never retries those, and a process that dies
between its compare-and-set and the enqueue loses at most one of them. The terminal webhook goes through
`settle`, which any process may call for a terminal record at any time (the change observer, and sweeps
over finished predictions that close the window a crash leaves): it is enqueued once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from gateway.deliveries.events import THROTTLE_MS, THROTTLED, Event, events_of, requested
from gateway.store import Delivery, DeliveryStore, StoredPrediction

Render = Callable[[StoredPrediction], str]
"""The prediction object a GET returns, as compact UTF-8 JSON."""

# How long a settle claim stands before another caller may take it over: far longer than a claim's XADD takes.
SETTLE_LEASE_MS = 30_000


class Outbox:
    def __init__(self, store: DeliveryStore, render: Render) -> None:
        self._store = store
        self._render = render

    async def observe(self, before: StoredPrediction, after: StoredPrediction) -> None:
        """Enqueue the webhook a change calls for, if any (a Tracker observer)."""
        wanted = events_of(before, after) & requested(after.doc)
        if not wanted:
            return
        if Event.COMPLETED in wanted:
            await self.settle(after)
        elif wanted <= THROTTLED and not await self._store.throttle(after.id, THROTTLE_MS):
            return  # the next change, or the terminal webhook, carries this one's output and logs
        else:
            await self._enqueue(after, f"msg_{after.id}_{secrets.token_hex(8)}", terminal=False)

    async def settle(self, record: StoredPrediction) -> None:
        """Enqueue a terminal prediction's `completed` webhook unless that was done before; idempotent.

        At most once while callers live. A caller that dies after enqueueing but before marking it done
        leaves its claim to lapse, and a later call enqueues it again under the same `webhook-id`."""
        if not record.status.terminal or Event.COMPLETED not in requested(record.doc):
            return
        if await self._store.claim_settle(record.id, SETTLE_LEASE_MS):
            await self._enqueue(record, f"msg_{record.id}_completed", terminal=True)
            await self._store.settled(record.id)

    async def _enqueue(self, record: StoredPrediction, webhook_id: str, *, terminal: bool) -> None:
        body = self._render(record)  # fixed now: every attempt sends this state, signed as sent
        delivery = Delivery(webhook_id, record.doc["webhook"], record.tenant, record.id, body, terminal, time.time())
        await self._store.enqueue(delivery)
