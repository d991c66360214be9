"""Queue-depth gauges: the last reading of the work waiting in Redis, taken when /metrics is scraped.

A reading that failed or came too late leaves the depth series out of the scrape (Prometheus marks them stale)
and `gateway_queue_depths_up` at 0, so a Redis outage never holds up /metrics nor shows old depths as current.
Every process reads the same shared queues: aggregate these series with `max`, never `sum`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.errors import StoreError
from gateway.store import QueueDepths

DEPTH_TIMEOUT_SECONDS = 0.5  # how long a scrape waits for Redis


class DepthCollector(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._depths: QueueDepths | None = None
        registry.register(self)

    async def refresh(self, read: Callable[[], Awaitable[QueueDepths]], timeout: float = DEPTH_TIMEOUT_SECONDS) -> None:
        """Take a new reading with `read`; none when Redis fails or does not answer within `timeout` seconds."""
        try:
            self._depths = await asyncio.wait_for(read(), timeout)
        except (StoreError, TimeoutError):
            self._depths = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("gateway_queue_depths_up", "1 when this scrape read the queue depths from Redis in time, else 0")
        up.add_metric([], 0 if self._depths is None else 1)
        yield up
        if self._depths is not None:
            yield from _families(self._depths)


def _families(depths: QueueDepths) -> Iterable[Metric]:
    scheduled = GaugeMetricFamily(
        "gateway_schedule_items", "Ids in a background schedule (follow_ups: unfinished predictions)", labels=["schedule"]
    )
    overdue = GaugeMetricFamily(
        "gateway_schedule_overdue_items", "Ids due by now that no process has claimed yet", labels=["schedule"]
    )
    for name, schedule in (("follow_ups", depths.follow_ups), ("deadlines", depths.deadlines)):
        scheduled.add_metric([name], schedule.scheduled)
        overdue.add_metric([name], schedule.overdue)
    pending = GaugeMetricFamily(
        "gateway_webhook_deliveries_pending", "Client webhooks read by a sender and not finished (in flight or retrying)"
    )
    pending.add_metric([], depths.deliveries.pending)
    lag = GaugeMetricFamily("gateway_webhook_deliveries_lag", "Client webhooks enqueued and not yet read by any sender")
    lag.add_metric([], depths.deliveries.lag)
    slots = GaugeMetricFamily(
        "gateway_slot_queue_items",
        "Predictions of a provider with one slot per server (Cog): waiting, claimed by a dispatcher, running",
        labels=["provider", "state"],
    )
    for provider, queue in sorted(depths.slot_queues.items()):
        for state, count in (("waiting", queue.waiting), ("dispatching", queue.dispatching), ("running", queue.running)):
            slots.add_metric([provider, state], count)
    return [scheduled, overdue, pending, lag, slots]
