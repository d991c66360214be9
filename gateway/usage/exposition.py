"""The usage metrics (`/metrics/usage`): Prometheus counters read from the exact all-time totals in Redis.

Every gateway process answers with the same numbers (they are the shared totals, not the process's own), so
scrape one target for them (the service address behind the load balancer) and never sum across instances;
`sum by (tenant)` over the key series gives a tenant's totals. With `by="tenant"` the `key_id` label is
left out and series are per tenant and model: for operators with very many keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.store.usage import SEPARATOR

LabelBy = Literal["key", "tenant"]
_STATUSES = ("succeeded", "failed", "canceled")


class _Totals(Collector):
    def __init__(self, totals: dict[str, dict[str, int]], by: LabelBy, currency: str) -> None:
        self._totals = totals
        self._by = by
        self._currency = currency

    def collect(self) -> Iterator[Metric]:
        labels = ["tenant", "key_id", "model"] if self._by == "key" else ["tenant", "model"]
        predictions = CounterMetricFamily(
            "gateway_usage_predictions", "Finished predictions, by status (exact across processes)", labels=[*labels, "status"]
        )
        seconds = CounterMetricFamily("gateway_usage_predict_seconds", "Run time of finished predictions", labels=labels)
        outputs = CounterMetricFamily("gateway_usage_outputs", "Outputs of succeeded predictions", labels=labels)
        cost = CounterMetricFamily(
            "gateway_usage_cost", f"What finished predictions cost, in {self._currency}", labels=[*labels, "currency"]
        )
        for tenant, counters in sorted(self._totals.items()):
            sums: dict[tuple[str, ...], dict[str, int]] = {}
            for name, amount in counters.items():
                key_id, model, measure = name.split(SEPARATOR)
                group: tuple[str, ...] = (tenant, key_id, model) if self._by == "key" else (tenant, model)
                found = sums.setdefault(group, {})
                found[measure] = found.get(measure, 0) + amount
            for group, measures in sorted(sums.items()):
                values = list(group)
                for status in _STATUSES:
                    predictions.add_metric([*values, status], measures.get(status, 0))
                seconds.add_metric(values, measures.get("predict_us", 0) / 1e6)
                outputs.add_metric(values, measures.get("outputs", 0))
                cost.add_metric([*values, self._currency], float(Decimal(measures.get("cost", 0)).scaleb(-9)))
        yield from (predictions, seconds, outputs, cost)


def exposition(totals: dict[str, dict[str, int]], by: LabelBy, currency: str) -> bytes:
    """The Prometheus text of the usage totals (tenant → `key|model|measure` → amount)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Totals(totals, by, currency))
    return generate_latest(registry)
