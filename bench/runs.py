"""One run of the harness: the canned upstream for its whole length, each target started in turn and put
through its scenarios, then the scenarios on the Replicate emulator; every row in the order of the table."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench import http_scenarios, streams, waits, webhooks
from bench.http_scenarios import Plan
from bench.table import TARGETS, Results, Row
from bench.targets import Endpoint, start
from bench.upstream import canned_upstream

if TYPE_CHECKING:
    from bench.__main__ import Sizes

# Which scenarios each target of the canned upstream runs.
_PLAN = {
    "a": ("create", "get", "fixed-rate"),
    "b": ("create", "get"),
    "c": ("create", "get", "fixed-rate"),
    "d": ("create", "get", "fixed-rate"),
    "e": ("create", "get", "fixed-rate"),
    "f": ("create", "get", "fixed-rate", "soak"),
    "f-warning": ("create", "get"),
    "f-workers2": ("workers",),
}


class Run:
    def __init__(
        self, scratch: Path, sizes: Sizes, rate: float, only: set[str], litellm_problem: str | None, workers_problem: str | None
    ) -> None:
        self._scratch = scratch
        self._sizes = sizes
        self._plan = Plan(sizes.seconds, sizes.warm_seconds, rate, sizes.soak_requests, sizes.idle_seconds)
        self._only_scenarios = {name for name in only if name not in TARGETS}
        self._only_targets = {name for name in only if name in TARGETS}
        self._problems = {"e": litellm_problem, "f-workers2": workers_problem}

    def all(self) -> Results:
        rows = list(self._upstream_rows())
        rows += self._emulated_rows()
        return Results(rows)

    def _wanted(self, scenario: str, target: str = "f") -> bool:
        return (not self._only_scenarios or scenario in self._only_scenarios) and (
            not self._only_targets or target in self._only_targets
        )

    def _upstream_rows(self) -> Iterator[Row]:
        with canned_upstream(self._scratch / "upstream") as upstream:
            for target, scenarios in _PLAN.items():
                wanted = [scenario for scenario in scenarios if self._wanted(scenario, target)]
                if not wanted:
                    continue
                problem = self._problems.get(target)
                if problem:
                    yield from (Row(_name(scenario, self._plan), target, skipped=problem) for scenario in wanted)
                    continue
                _say(f"{TARGETS[target]}: {', '.join(wanted)}")
                with start(target, self._scratch / target, upstream) as endpoint:
                    for scenario in wanted:
                        measure = functools.partial(self._scenario, scenario, endpoint)
                        yield _or_failed(_name(scenario, self._plan), measure, target)

    def _scenario(self, scenario: str, endpoint: Endpoint) -> Row:
        plan = self._plan
        if scenario in ("create", "workers"):
            return http_scenarios.closed_loop("create", endpoint, endpoint.create(), plan)
        if scenario == "get":
            return http_scenarios.closed_loop("get", endpoint, endpoint.read(), plan)
        if scenario == "fixed-rate":
            return http_scenarios.fixed_rate(endpoint, plan)
        return http_scenarios.soak(endpoint, plan)

    def _emulated_rows(self) -> list[Row]:
        sizes = self._sizes
        emulated: list[tuple[str, str, Callable[[], Row]]] = [
            ("wait", "create, Prefer: wait, 1 s model", lambda: waits.one_second_model(self._wait_plan())),
            ("waits", "concurrent waits", lambda: waits.concurrent(sizes.waits, sizes.wait_run_seconds)),
            ("streams", "open streams", self._streams),
            ("webhooks", "terminal webhooks", lambda: webhooks.deliveries(sizes.webhooks)),
        ]
        rows = []
        for scenario, name, measure in emulated:
            if self._wanted(scenario):
                _say(name)
                rows.append(_or_failed(name, measure))
        return rows

    def _streams(self) -> Row:
        return streams.open_streams(self._scratch / "streams", self._sizes.streams, self._sizes.settle_seconds)

    def _wait_plan(self) -> Plan:
        """Requests that take a second need runs of several seconds to finish any."""
        plan = self._plan
        return Plan(max(plan.seconds, 3), plan.warm_seconds, plan.rate, plan.soak_requests, plan.idle_seconds)


def _name(scenario: str, plan: Plan) -> str:
    return {"fixed-rate": f"create at {plan.rate:g}/s", "workers": "create"}.get(scenario, scenario)


def _or_failed(name: str, measure: Callable[[], Row], target: str = "f") -> Row:
    """The scenario's row, or one that says how it failed: one scenario's failure does not lose the run."""
    try:
        return measure()
    except Exception as exc:  # any failure of a target or driver is reported in its row
        _say(f"{name} failed: {exc!r}")
        return Row(name, target, skipped=f"failed: {type(exc).__name__}: {exc}"[:200])


def _say(what: str) -> None:
    print(f"… {what}", file=sys.stderr, flush=True)
