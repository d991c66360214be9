"""The breaker-state gauge: every route's breaker as the store holds it, read when /metrics is scraped.

Every process reads the same shared breakers: aggregate with `max`, never `sum`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.routing.breakers import BreakerState
from gateway.scraped import ScrapedGauges


class BreakerGauges(ScrapedGauges[list[BreakerState]]):
    def __init__(self, registry: CollectorRegistry) -> None:
        up_help = "1 when this scrape read the circuit breakers from Redis in time, else 0"
        super().__init__(registry, "gateway_breaker_states_up", up_help, _families)


def _families(states: list[BreakerState]) -> Iterable[Metric]:
    gauge = GaugeMetricFamily(
        "gateway_breaker_state", "Circuit breaker of an upstream route: 0 closed, 1 half-open, 2 open", labels=["route"]
    )
    for breaker in states:
        gauge.add_metric([breaker.route], breaker.state.level)
    return [gauge]
