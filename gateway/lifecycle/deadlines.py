"""`Cancel-After` deadlines: a prediction still unfinished when its deadline passes is cancelled, upstream
first, by whichever gateway process takes it from the shared schedule."""

from __future__ import annotations

import logging
import time

from gateway.errors import GatewayError
from gateway.lifecycle.worker import work_on
from gateway.predictions import Predictions
from gateway.store import Schedule
from gateway.timestamps import parse_timestamp

logger = logging.getLogger(__name__)
_RETRY_SECONDS = 5.0  # an upstream that could not be told to cancel is asked again this much later
# ... until this long after the deadline; then the prediction is canceled at the gateway alone (it stops being
# billed or waited on there, and the failure is logged for the operator).
_UPSTREAM_GRACE_SECONDS = 120.0
_LEASE_SECONDS = 60.0
_TICK_SECONDS = 0.25
_CONCURRENCY = 16


class Deadlines:
    def __init__(self, schedule: Schedule, predictions: Predictions) -> None:
        self._schedule = schedule
        self._predictions = predictions

    async def run(self) -> None:
        """Cancel predictions whose deadline passed, until cancelled (every gateway process runs one)."""
        await work_on(
            self._schedule, self.visit, tick_seconds=_TICK_SECONDS, lease_seconds=_LEASE_SECONDS, concurrency=_CONCURRENCY
        )

    async def visit(self, prediction_id: str) -> None:
        record = await self._predictions.find(prediction_id)
        if record is not None and record.provisional:  # its create is still handing it on: cancel once it has
            await self._schedule.reschedule(prediction_id, int((time.time() + 1) * 1000))
            return
        if record is not None and not record.status.terminal:
            deadline = parse_timestamp(record.doc.get("deadline")) or 0.0
            upstream_first = time.time() < deadline + _UPSTREAM_GRACE_SECONDS
            if not upstream_first:
                logger.error("the upstream never took the cancel of prediction %s; canceled at the gateway only", prediction_id)
            try:
                await self._predictions.expire(record, upstream_first=upstream_first)
            except GatewayError as exc:
                logger.warning("cancelling prediction %s at its deadline failed (%s); retrying", prediction_id, exc.detail)
                await self._schedule.reschedule(prediction_id, int((time.time() + _RETRY_SECONDS) * 1000))
                return
        await self._schedule.remove(prediction_id)
