"""Queue-depth gauges: the last reading of the work waiting in Redis, taken when /metrics is scraped.

Every process reads the same shared queues: aggregate these series with `max`, never `sum`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.scraped import ScrapedGauges
from gateway.store import QueueDepths


class DepthCollector(ScrapedGauges[QueueDepths]):
    def __init__(self, registry: CollectorRegistry) -> None:
        up_help = "1 when this scrape read the queue depths from Redis in time, else 0"
        super().__init__(registry, "gateway_queue_depths_up", up_help, _families)


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
