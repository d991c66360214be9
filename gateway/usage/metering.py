"""Settlement: each finished prediction's usage recorded once, and its pre-charge settled with the real cost.

Settlement hangs on the terminal compare-and-set: the one process whose change made a prediction finish settles
it at once (`observe`), and the follow-ups, which visit every finished prediction before dropping it, settle it
again (`settle`) in case that process died first. The store's settlement script does nothing for a prediction
already settled, so every finished prediction is recorded exactly once, whichever process gets there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.store import Settlement, StoredPrediction, UsageStore
from gateway.timestamps import parse_timestamp
from gateway.usage.money import amount_text, periods_of
from gateway.usage.prices import Price, outputs_of

PriceOf = Callable[[str], Price]
"""The price of a model (by `owner/name`) as the catalog has it now."""


# Finished predictions a process remembers having settled. The follow-ups visit each finished prediction again
# within seconds: one settled by this process costs no second settlement round trip (another process's visit, after
# this one died, still settles it through the store, which counts it once).
_SETTLED_REMEMBERED = 100_000


class Metering:
    def __init__(self, store: UsageStore, price_of: PriceOf) -> None:
        self._store = store
        self._price_of = price_of
        self._settled: dict[str, None] = {}  # ids this process settled, oldest first

    async def observe(self, before: StoredPrediction, after: StoredPrediction) -> None:
        """A change this process applied: settle it when it is the one that finished the prediction."""
        if after.status.terminal and not before.status.terminal:
            await self.settle(after)

    async def settle(self, record: StoredPrediction) -> None:
        """Record a finished prediction's usage (idempotent; no round trip for one this process settled)."""
        if record.status.terminal and record.id not in self._settled:
            await self._store.settle(self.usage(record), int(time.time() * 1000))
            self._settled[record.id] = None
            if len(self._settled) > _SETTLED_REMEMBERED:
                del self._settled[next(iter(self._settled))]

    async def release(self, record: StoredPrediction) -> None:
        """Give back what a create pre-charged when it never reached the upstream (idempotent)."""
        await self._store.settle(_released(record), int(time.time() * 1000))

    def usage(self, record: StoredPrediction) -> Settlement:
        doc = record.doc
        metrics = doc.get("metrics") or {}
        predict_us = _micros(metrics.get("predict_time"))
        total_us = _micros(metrics.get("total_time"))
        outputs = outputs_of(doc.get("output")) if record.status.value == "succeeded" else 0
        cost = self._price_of(doc["model"]).cost(record.status, predict_us, outputs)
        completed = parse_timestamp(doc.get("completed_at")) or time.time()
        row = {
            "id": record.id,
            "tenant": record.tenant,
            "key_id": record.key_id,
            "model": doc["model"],
            "version": doc.get("version") or "",
            "provider": record.provider,
            "status": record.status.value,
            "created_at": doc.get("created_at") or "",
            "completed_at": doc.get("completed_at") or "",
            "predict_time": f"{predict_us / 1e6:.6f}",
            "total_time": f"{total_us / 1e6:.6f}",
            "outputs": str(outputs),
            "cost": amount_text(cost),
        }
        return Settlement(
            prediction_id=record.id,
            tenant=record.tenant,
            key_id=record.key_id,
            model=doc["model"],
            version=doc.get("version") or "",
            provider=record.provider,
            status=record.status.value,
            predict_us=predict_us,
            total_us=total_us,
            outputs=outputs,
            cost=cost,
            hour=int(completed // 3600 * 3600),
            periods=periods_of(record.created_ms),
            row=row,
        )


def _released(record: StoredPrediction) -> Settlement:
    return Settlement(
        prediction_id=record.id,
        tenant=record.tenant,
        key_id=record.key_id,
        model=record.doc["model"],
        version="",
        provider=record.provider,
        status="",
        predict_us=0,
        total_us=0,
        outputs=0,
        cost=0,
        hour=0,
        periods=periods_of(record.created_ms),
        row={},
    )


def _micros(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return 0
    return round(seconds * 1_000_000)
