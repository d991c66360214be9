"""Usage reports: the hourly aggregates filtered and grouped (JSON and CSV), and the all-time totals per key."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import BadRequest
from gateway.store import UsageStore
from gateway.store.usage import SEPARATOR
from gateway.timestamps import timestamp
from gateway.usage.money import amount_text

GROUPS = ("hour", "day", "tenant", "key", "model", "version", "provider")
STATUSES = ("succeeded", "failed", "canceled")
MEASURES = ("predictions", *STATUSES, "predict_time", "total_time", "outputs", "cost")
DEFAULT_DAYS = 30
_HOUR = 3600
_DAY = 86_400
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z
_COLUMN = {"tenant": "tenant", "key": "key_id", "model": "model", "version": "version", "provider": "provider"}


@dataclass(frozen=True)
class UsageQuery:
    """Which usage to report: `tenants` None means all; times are epoch seconds, widened to whole hours
    (`since` down, `until` up), `until` exclusive."""

    tenants: Sequence[str] | None = None
    key_id: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    group_by: tuple[str, ...] = ("day",)

    def window(self, now: float) -> tuple[int, int]:
        until = self.until if self.until is not None else now
        since = self.since if self.since is not None else until - DEFAULT_DAYS * _DAY
        if not (0 <= since < _LAST_SECOND and 0 < until <= _LAST_SECOND):
            raise BadRequest("since and until must be times from 1970 to 9999")
        if since >= until:
            raise BadRequest("since must be earlier than until")
        return int(since // _HOUR * _HOUR), int(-(-until // _HOUR) * _HOUR)


def parse_groups(value: str | None) -> tuple[str, ...]:
    """`group_by` as given: a comma-separated list of GROUPS (at most one of hour and day)."""
    groups = tuple(part.strip() for part in (value or "day").split(",") if part.strip())
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise BadRequest(f"group_by takes a comma-separated list of {', '.join(GROUPS)}; got {value!r}")
    if "hour" in groups and "day" in groups:
        raise BadRequest("group_by may name hour or day, not both")
    return tuple(dict.fromkeys(groups))


@dataclass
class _Sums:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("succeeded", "failed", "canceled"), 0))
    predict_us: int = 0
    total_us: int = 0
    outputs: int = 0
    cost: int = 0

    def add(self, measure: str, amount: int) -> None:
        if measure in self.counts:
            self.counts[measure] += amount
        elif measure in ("predict_us", "total_us", "outputs", "cost"):
            setattr(self, measure, getattr(self, measure) + amount)

    def merge(self, other: _Sums) -> None:
        for name, count in other.counts.items():
            self.counts[name] += count
        self.predict_us += other.predict_us
        self.total_us += other.total_us
        self.outputs += other.outputs
        self.cost += other.cost

    def json(self) -> dict[str, Any]:
        return {
            "predictions": sum(self.counts.values()),
            **self.counts,
            "predict_time": round(self.predict_us / 1e6, 6),
            "total_time": round(self.total_us / 1e6, 6),
            "outputs": self.outputs,
            "cost": amount_text(self.cost),
        }


class UsageReports:
    def __init__(self, store: UsageStore, currency: str) -> None:
        self._store = store
        self.currency = currency

    async def report(self, query: UsageQuery) -> dict[str, Any]:
        """The usage matching `query`, a row per group (its dimensions, then the measures), and the totals."""
        first, end = query.window(time.time())
        tenants = list(query.tenants) if query.tenants is not None else await self._store.tenants()
        hours = await self._store.hours(tenants, first, end - _HOUR)
        groups: dict[tuple[str, ...], _Sums] = {}
        for tenant, tenant_hours in hours.items():
            for hour in tenant_hours:
                for name, amount in hour.counters.items():
                    key_id, model, version, provider, measure = name.split(SEPARATOR)
                    if (query.key_id and key_id != query.key_id) or (query.model and model != query.model):
                        continue
                    dims = {"tenant": tenant, "key": key_id, "model": model, "version": version, "provider": provider}
                    group = tuple(_dimension(g, dims, hour.hour) for g in query.group_by)
                    groups.setdefault(group, _Sums()).add(measure, amount)
        totals = _Sums()
        results = []
        for group, sums in sorted(groups.items()):
            totals.merge(sums)
            results.append({**_row_dims(query.group_by, group), **sums.json()})
        return {
            "currency": self.currency,
            "since": timestamp(first),
            "until": timestamp(end),
            "group_by": list(query.group_by),
            "results": results,
            "totals": totals.json(),
        }

    async def totals(self, tenants: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """All-time counters per tenant: `key|model|measure` → amount."""
        return await self._store.totals(list(tenants) if tenants is not None else await self._store.tenants())

    async def rows(self, tenant: str, since: float, until: float, count: int) -> list[dict[str, str]]:
        """Per-prediction usage rows of a tenant (kept for the row retention), oldest first."""
        found = await self._store.rows(tenant, int(since * 1000), int(until * 1000), count)
        return [fields for _, fields in found]


def report_csv(report: dict[str, Any]) -> str:
    """A report's rows as CSV (dimensions first, then the measures; money with nine decimal places)."""
    dims = [("period" if g in ("hour", "day") else _COLUMN[g]) for g in report["group_by"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*dims, *MEASURES, "currency"])
    for row in report["results"]:
        writer.writerow([*(row[d] for d in dims), *(row[m] for m in MEASURES), report["currency"]])
    return out.getvalue()


def _dimension(group: str, dims: dict[str, str], hour: int) -> str:
    if group == "hour":
        return timestamp(hour)
    if group == "day":
        return timestamp(hour // _DAY * _DAY)
    return dims[group]


def _row_dims(group_by: Iterable[str], group: tuple[str, ...]) -> dict[str, str]:
    return {("period" if g in ("hour", "day") else _COLUMN[g]): value for g, value in zip(group_by, group, strict=True)}
