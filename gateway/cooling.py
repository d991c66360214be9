"""The credential-cooling gauge: whether each upstream credential cools down now, read at scrape time.

The reading is the process's copy of the shared cooling state (kept current over pub/sub), so it costs no Redis
round trip and is the same on every process: aggregate with `max`. Credentials are named by fingerprint only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Cooling = Callable[[], Iterable[tuple[str, str, bool]]]
"""(provider, credential fingerprint, cooling now) of every credential."""


class CoolingCollector(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._read: Cooling = lambda: ()
        registry.register(self)

    def read_from(self, read: Cooling) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "gateway_upstream_credential_cooling",
            "1 while an upstream credential cools down after a 429 (no process uses it), else 0",
            labels=["provider", "credential"],
        )
        for provider, credential, cooling in self._read():
            gauge.add_metric([provider, credential], 1 if cooling else 0)
        yield gauge
