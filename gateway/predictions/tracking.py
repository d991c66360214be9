"""The one path every change of a prediction takes, whoever reports it: an upstream webhook, a refresh, a
cancel, or a slot dispatcher. What the upstream reported is merged into the public document and written
with the store's compare-and-set, so each transition happens once across all gateway processes."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.metrics import Metrics
from gateway.outputs import hide
from gateway.providers import UpstreamPrediction
from gateway.status import Status
from gateway.store import PredictionStore, StoredPrediction
from gateway.timestamps import parse_timestamp, timestamp

logger = logging.getLogger(__name__)

RemoteOutputs = Callable[[str], bool]
"""Whether a provider (by name) keeps output files on the upstream, behind gateway links."""
Observer = Callable[[StoredPrediction, StoredPrediction], Awaitable[None]]
"""Told of each change this process applied (the record before, the record after), once per change across all
gateway processes: only the writer whose compare-and-set succeeded tells its observers."""


class Tracker:
    def __init__(self, store: PredictionStore, metrics: Metrics, remote_outputs: RemoteOutputs) -> None:
        self._store = store
        self._metrics = metrics
        self._remote_outputs = remote_outputs
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def report(self, prediction_id: str, upstream: UpstreamPrediction) -> StoredPrediction | None:
        """Apply what an upstream reported on a prediction; the record as now stored, None when there is none."""
        record = await self._store.get(prediction_id)
        return None if record is None else await self.apply(record, upstream)

    async def apply(self, record: StoredPrediction, upstream: UpstreamPrediction) -> StoredPrediction:
        """The record after applying `upstream`, or as another writer left it when the transition is not allowed."""
        if _out_of_order(record, upstream):
            return record
        now = time.time()
        outputs = None
        if self._remote_outputs(record.provider):
            public_output, outputs = hide(upstream.output)
            upstream = dataclasses.replace(upstream, output=public_output)
        doc = _merged(record.doc, upstream, now)
        status = Status(doc["status"])
        stream = upstream.stream_url or ""
        if await self._store.apply(record.id, status, doc, now, upstream.id, outputs, stream):
            if status.terminal:  # the compare-and-set let exactly one writer get here
                self._metrics.prediction_finished(doc["model"], record.provider, status)
            applied = dataclasses.replace(
                record,
                status=status,
                doc=doc,
                upstream_id=upstream.id or record.upstream_id,
                refreshed_at=now,
                upstream_outputs=tuple(outputs or record.upstream_outputs),
                provisional=False,
                upstream_stream=stream or record.upstream_stream,
            )
            await self._tell(record, applied)
            return applied
        current = await self._store.get(record.id)  # another writer moved it on first
        return current or record

    async def _tell(self, before: StoredPrediction, after: StoredPrediction) -> None:
        for observer in self._observers:
            try:
                await observer(before, after)
            except Exception:  # the change is stored; an observer's failure must not undo the caller's success
                logger.exception("an observer of prediction %s failed", after.id)


def _out_of_order(record: StoredPrediction, upstream: UpstreamPrediction) -> bool:
    """A progress report older than what is stored (webhooks may arrive out of order): logs only grow."""
    stale_progress = upstream.status is Status.PROCESSING and record.status is Status.PROCESSING
    return stale_progress and len(upstream.logs or "") < len(record.doc.get("logs") or "")


def _merged(doc: dict[str, Any], upstream: UpstreamPrediction, now: float) -> dict[str, Any]:
    """The public document updated with what the upstream reported; ids, model and version stay ours."""
    merged = {**doc, "status": upstream.status.value, "output": upstream.output, "error": upstream.error}
    if upstream.logs is not None:
        merged["logs"] = upstream.logs
    started = doc.get("started_at") or _normalised(upstream.started_at)
    if upstream.status is not Status.STARTING and upstream.status is not Status.CANCELED:
        started = started or timestamp(now)  # it ran, though nobody saw it start
    if started:  # left out until known, as Replicate does
        merged["started_at"] = started
    if upstream.status.terminal:
        merged["completed_at"] = _normalised(upstream.completed_at) or timestamp(now)
        merged["metrics"] = _final_metrics(doc, upstream, started, merged["completed_at"], now)
    elif upstream.metrics:
        merged["metrics"] = upstream.metrics
    return merged


def _final_metrics(
    doc: dict[str, Any], upstream: UpstreamPrediction, started_at: str | None, completed_at: str, now: float
) -> dict[str, Any]:
    """The upstream's metrics, with `total_time` from creation, and `predict_time` from the run's start whenever
    it ran (a canceled or failed run too: that time was spent, and billed upstream) and the upstream did not say."""
    metrics = {**(upstream.metrics or {}), "total_time": round(now - (parse_timestamp(doc["created_at"]) or now), 6)}
    started, completed = parse_timestamp(started_at), parse_timestamp(completed_at)
    if "predict_time" not in metrics and started is not None and completed is not None:
        metrics["predict_time"] = round(max(completed - started, 0.0), 6)
    return metrics


def _normalised(value: str | None) -> str | None:
    epoch = parse_timestamp(value)
    return None if epoch is None else timestamp(epoch)
