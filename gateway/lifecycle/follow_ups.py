"""Follow-ups: every prediction is scheduled when it is created and visited until it has ended and been settled.

A visit to an unfinished prediction on an upstream that answers GET polls it, unless news arrived recently (an
upstream webhook, a client's read): polling is the fallback for webhooks that never come, not a second feed.
The wait between polls grows with the prediction's age. A visit to a finished prediction runs the settlement
hooks (the terminal client webhook, usage) once more, which are idempotent, then drops it from the schedule:
whatever stopped the process that finished the prediction before it settled, settlement still happens. A create
that never completed (its process died between writing the record and handing the prediction on) is undone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.lifecycle.worker import work_on
from gateway.predictions import Predictions
from gateway.store import Schedule, StoredPrediction

logger = logging.getLogger(__name__)

Settle = Callable[[StoredPrediction], Awaitable[None]]
"""Settle a finished prediction; must be idempotent (it may run again after a crash)."""

_SETTLE_RETRY_SECONDS = 5.0
# A record still provisional this long after creation belongs to a create that will never finish. It must be caught
# before the record expires (PROVISIONAL_SECONDS, 300 s), and follow-ups come at least every `longest_seconds`: the
# policy's `abandoned_after_seconds` (the catalog's longest create, `Dispatch.longest`) is at most this.
ABANDONED_AFTER_SECONDS = 180.0


@dataclass(frozen=True)
class FollowUpPolicy:
    """When to look at an unfinished prediction again: after `ratio` times its age, within [first, longest]."""

    first_seconds: float = 1.0
    ratio: float = 0.5
    longest_seconds: float = 30.0
    lease_seconds: float = 60.0  # longer than any upstream read: a visit is never repeated while it runs
    tick_seconds: float = 0.25
    concurrency: int = 32  # visits in flight per process
    abandoned_after_seconds: float = ABANDONED_AFTER_SECONDS  # longer than any create takes

    def interval(self, age_seconds: float) -> float:
        return min(max(age_seconds * self.ratio, self.first_seconds), self.longest_seconds)


class FollowUps:
    def __init__(
        self,
        schedule: Schedule,
        predictions: Predictions,
        policy: FollowUpPolicy,
        settle: Sequence[Settle] = (),
    ) -> None:
        self._schedule = schedule
        self._predictions = predictions
        self._policy = policy
        self._settle = tuple(settle)

    async def run(self) -> None:
        """Visit due predictions until cancelled (every gateway process runs one of these)."""
        policy = self._policy
        await work_on(
            self._schedule,
            self.visit,
            tick_seconds=policy.tick_seconds,
            lease_seconds=policy.lease_seconds,
            concurrency=policy.concurrency,
        )

    async def visit(self, prediction_id: str) -> None:
        record = await self._predictions.find(prediction_id)
        if record is None:  # expired, or its create failed and removed it
            await self._schedule.remove(prediction_id)
            return
        now = time.time()
        age = now - record.created_ms / 1000
        if record.provisional and age >= self._policy.abandoned_after_seconds:
            # Its create never finished (the process died mid-way, or its clean-up failed). When it reached the
            # upstream, the prediction runs there and is taken over; otherwise it is undone before the record
            # expires, so that its pre-charge is given back.
            recovered = await self._predictions.recover(record)
            if recovered is None:
                await self._predictions.abandon(record)
                await self._schedule.remove(prediction_id)
                return
            record = recovered
        if self._predictions.unconfirmed(record):
            record = await self._predictions.confirm(record)
        interval = self._policy.interval(age)
        polled = not record.status.terminal and not record.provisional and self._predictions.pollable(record)
        if polled and now - record.refreshed_at >= interval:
            record = await self._predictions.refresh(record)
        if record.status.terminal:
            await self._settled(record)
            return
        # An interval after the latest news; after a failed poll (no news), an interval from now. A provisional
        # record (a create still in flight) is looked at again the same way, and expires if the create failed.
        due = record.refreshed_at + interval
        if due <= now:
            due = now + interval
        await self._schedule.reschedule(prediction_id, int(due * 1000))

    async def _settled(self, record: StoredPrediction) -> None:
        for settle in self._settle:
            try:
                await settle(record)
            except Exception:
                logger.exception("settling prediction %s failed; retrying", record.id)
                await self._schedule.reschedule(record.id, int((time.time() + _SETTLE_RETRY_SECONDS) * 1000))
                return
        await self._schedule.remove(record.id)
