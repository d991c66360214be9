"""Gauges of shared state read from Redis when /metrics is scraped: every process reports the same values.

A reading that failed or came too late leaves its series out of the scrape (Prometheus marks them stale) and its
`…_up` gauge at 0, so a Redis outage never holds up /metrics nor shows old values as current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.errors import StoreError

SCRAPE_TIMEOUT_SECONDS = 0.5  # how long a scrape waits for Redis
T = TypeVar("T")


class ScrapedGauges(Collector, Generic[T]):
    """The gauges `families` makes of the last reading, with `up` (named and described by `up_name`/`up_help`)."""

    def __init__(
        self, registry: CollectorRegistry, up_name: str, up_help: str, families: Callable[[T], Iterable[Metric]]
    ) -> None:
        self._reading: T | None = None
        self._up = (up_name, up_help)
        self._families = families
        registry.register(self)

    async def refresh(self, read: Callable[[], Awaitable[T]], timeout: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        """Take a new reading with `read`; none when Redis fails or does not answer within `timeout` seconds."""
        try:
            self._reading = await asyncio.wait_for(read(), timeout)
        except (StoreError, TimeoutError):
            self._reading = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(*self._up)
        up.add_metric([], 0 if self._reading is None else 1)
        yield up
        if self._reading is not None:
            yield from self._families(self._reading)
