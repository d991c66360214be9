"""The request scenarios every target runs: create and read in a closed loop, create at a fixed rate, the soak
of many creates (the gateway's memory before and after) and, against the Replicate emulator, creates that
wait for a model taking a second."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.load import LoadResult, Request, open_loop, wrk
from bench.processes import cpu_seconds, rss_bytes
from bench.redis_stats import Meter
from bench.table import Row
from bench.targets import Endpoint


@dataclass(frozen=True)
class Plan:
    seconds: float  # each measured run
    warm_seconds: float  # an unmeasured run before it
    rate: float  # the open loop's requests per second
    soak_requests: int
    idle_seconds: float = 1.0  # how long the background Redis traffic is measured before a run


def measure(scenario: str, endpoint: Endpoint, plan: Plan, drive: Callable[[], LoadResult], note: str = "") -> Row:
    """Run `drive` and read what it cost the target: CPU, memory and (for the gateway) Redis."""
    meter = Meter(endpoint.redis_url, plan.idle_seconds) if endpoint.redis_url else None
    if meter:
        meter.start()
    rss, cpu = rss_bytes(endpoint.pid), cpu_seconds(endpoint.pid)
    result = drive()
    cpu, rss_after = cpu_seconds(endpoint.pid) - cpu, rss_bytes(endpoint.pid)
    cost = meter.cost(result.requests + result.errors) if meter else None
    return Row(
        scenario,
        endpoint.key,
        requests=result.requests,
        rate=result.rate,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        redis_commands=cost.commands if cost else None,
        round_trips=cost.round_trips if cost else None,
        redis_calls=cost.by_command if cost else {},
        rss_before=rss,
        rss_after=rss_after,
        cpu_per_1k=1000 * cpu / max(result.requests, 1),
        note=note,
    )


def closed_loop(scenario: str, endpoint: Endpoint, request: Request, plan: Plan) -> Row:
    _warm(request, plan)
    return measure(scenario, endpoint, plan, lambda: wrk(request, plan.seconds))


def fixed_rate(endpoint: Endpoint, plan: Plan) -> Row:
    _warm(endpoint.create(), plan)
    note = f"open loop at {plan.rate:g}/s, latency from each request's intended send time"
    drive = lambda: open_loop(endpoint.create(), plan.rate, plan.seconds)  # noqa: E731
    return measure(f"create at {plan.rate:g}/s", endpoint, plan, drive, note)


def soak(endpoint: Endpoint, plan: Plan) -> Row:
    """Creates in closed-loop runs of `plan.seconds` until `plan.soak_requests` are in; the memory before (after
    the scenarios before it warmed the process up) and after."""

    def drive() -> LoadResult:
        runs: list[LoadResult] = []
        while sum(run.requests for run in runs) < plan.soak_requests:
            runs.append(wrk(endpoint.create(), plan.seconds))
        requests = sum(run.requests for run in runs)
        seconds = sum(run.seconds for run in runs)
        worst = max(runs, key=lambda run: run.p99_ms)
        median = sorted(runs, key=lambda run: run.p50_ms)[len(runs) // 2]
        return LoadResult(requests, seconds, median.p50_ms, worst.p99_ms, sum(run.errors for run in runs))

    return measure("soak", endpoint, plan, drive, note="p50 the median run's, p99 the worst run's")


def _warm(request: Request, plan: Plan) -> None:
    if plan.warm_seconds:
        wrk(request, plan.warm_seconds)
