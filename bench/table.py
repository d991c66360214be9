"""The results: one row per (scenario, target), ratios to the minimal passthrough (c) and to LiteLLM (e) in the
same scenario, the issue's targets judged as met or not, and the table as text, markdown and JSON."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

TARGETS = {
    "a": "(a) upstream direct",
    "b": "(b) nginx reverse proxy",
    "c": "(c) passthrough aiohttp",
    "d": "(d) passthrough httpx",
    "e": "(e) LiteLLM pass-through",
    "f": "(f) gateway",
    "f-warning": "(f) gateway, log warning",
    "f-workers2": "(f) gateway --workers 2",
}


@dataclass
class Row:
    scenario: str
    target: str  # a key of TARGETS
    requests: int = 0
    rate: float | None = None  # requests/s
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    errors: int = 0
    redis_commands: float | None = None  # per request
    round_trips: float | None = None  # per request
    rss_before: int | None = None  # bytes
    rss_after: int | None = None
    cpu_per_1k: float | None = None  # CPU seconds per 1,000 requests
    note: str = ""
    skipped: str = ""  # why the row was not measured
    redis_calls: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    target: str
    met: bool | None  # None: not measured in this run
    measured: str


Check = Callable[["Results"], Verdict]


class Results:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def find(self, scenario: str, target: str) -> Row | None:
        for row in self.rows:
            if row.scenario == scenario and row.target == target and not row.skipped:
                return row
        return None

    def ratio(self, row: Row, target: str) -> float | None:
        other = self.find(row.scenario, target)
        return row.rate / other.rate if row.rate and other and other.rate else None

    def added(self, row: Row, quantile: str = "p50_ms") -> float | None:
        """Latency over the upstream direct (a) in the same scenario."""
        base = self.find(row.scenario, "a")
        mine, theirs = getattr(row, quantile), getattr(base, quantile) if base else None
        return mine - theirs if mine is not None and theirs is not None else None

    def verdicts(self) -> list[Verdict]:
        return [check(self) for check in _CHECKS]


def _rate_check(scenario: str, base: str, factor: float, mine: str = "f") -> Check:
    def check(results: Results) -> Verdict:
        name = f"{scenario}: {TARGETS[mine]} >= {factor:g}x {TARGETS[base]} req/s"
        row = results.find(scenario, mine)
        ratio = results.ratio(row, base) if row else None
        if ratio is None:
            return Verdict(name, None, "not measured")
        return Verdict(name, ratio >= factor, f"{ratio:.2f}x")

    return check


def _round_trips(scenario: str, limit: float) -> Check:
    def check(results: Results) -> Verdict:
        name = f"{scenario}: <= {limit:g} Redis round trips per request"
        row = results.find(scenario, "f")
        if row is None or row.round_trips is None:
            return Verdict(name, None, "not measured")
        return Verdict(name, row.round_trips <= limit + 0.05, f"{row.round_trips:.2f}")

    return check


def _fixed_rate(results: Results) -> Verdict:
    name = "create at 300/s: gateway's p99 added <= 2x passthrough's and < 13 ms"
    mine, theirs = results.find("create at 300/s", "f"), results.find("create at 300/s", "c")
    if mine is None or theirs is None:
        return Verdict(name, None, "not measured")
    added, base = results.added(mine, "p99_ms"), results.added(theirs, "p99_ms")
    if added is None or base is None:
        return Verdict(name, None, "not measured")
    return Verdict(name, added <= 2 * max(base, 0.0) and added < 13, f"{added:.1f} ms vs passthrough's {base:.1f} ms")


def _soak(results: Results) -> Verdict:
    name = "RSS growth <= 10% after warm-up"
    row = results.find("soak", "f")
    if row is None or not row.rss_before or row.rss_after is None:
        return Verdict(name, None, "not measured")
    growth = row.rss_after / row.rss_before - 1
    return Verdict(name, growth <= 0.10, f"{100 * growth:+.1f}% over {row.requests:,} creates")


def _waits(results: Results) -> Verdict:
    name = "concurrent Prefer: wait on one process: < 1 GiB RSS, each answered within 100 ms of completion"
    row = results.find("concurrent waits", "f")
    if row is None or row.rss_after is None:
        return Verdict(name, None, "not measured")
    late = math.inf if row.max_ms is None else row.max_ms
    met = row.rss_after < 2**30 and late <= 100 and row.errors == 0
    return Verdict(name, met, f"{row.requests:,} waits, peak {row.rss_after / 2**20:.0f} MiB, latest answer {late:.0f} ms")


_CHECKS: list[Check] = [
    _rate_check("create", "c", 0.5),
    _rate_check("create", "d", 5),
    _rate_check("create", "e", 15),
    _rate_check("get", "c", 1.3),
    _round_trips("create", 2),
    _round_trips("get", 1),
    _fixed_rate,
    _rate_check("create", "f", 1.7, mine="f-workers2"),
    _soak,
    _waits,
]
