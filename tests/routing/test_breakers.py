"""Circuit breakers shared through a real Valkey by several `Breakers`, each on its own client (a process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from gateway.routing import CircuitState, Ticket
from gateway.timestamps import parse_timestamp
from tests.routing.conftest import POLICY, Process, eventually

Opener = Callable[..., Awaitable[Process]]


async def _open(process: Process, route: str) -> None:
    for _ in range(POLICY.failures):
        await process.breakers.failed(Ticket(route), "http_503")


async def _probe(process: Process, route: str) -> Ticket:
    """Waits out the open period, then claims the probe. (A process learns of an opening when the announcement
    arrives, so its open period may end a few milliseconds after the store's.)"""
    await asyncio.sleep(POLICY.open_ms / 1000)
    for _ in range(100):
        ticket = await process.breakers.admit(route)
        if ticket is not None:
            assert ticket.probe
            return ticket
        await asyncio.sleep(0.005)
    raise AssertionError("no probe")


async def test_failures_up_to_the_threshold_within_the_window_open_the_breaker_for_every_process(
    open_process: Opener, route: str
) -> None:
    first, second = await open_process(), await open_process()
    for _ in range(POLICY.failures - 1):
        await first.breakers.failed(Ticket(route), "http_503")
    assert await first.breakers.admit(route) == Ticket(route)
    await second.breakers.failed(Ticket(route), "timeout")  # the threshold counts every process's failures

    assert await second.breakers.admit(route) is None
    await eventually(lambda: first.breakers.local_state(route) is CircuitState.OPEN)
    assert await first.breakers.admit(route) is None
    assert second.transitions == [(route, "open")] and first.transitions == []
    (state,) = [s for s in await first.breakers.states() if s.route == route]
    assert (state.state, state.failures, state.last_failure) == (CircuitState.OPEN, 3, "timeout")
    opened_at, retry_at = parse_timestamp(state.opened_at), parse_timestamp(state.retry_at)
    assert opened_at is not None and retry_at is not None
    assert round(retry_at - opened_at, 3) == POLICY.open_ms / 1000
    assert abs(opened_at - time.time()) < 1


async def test_route_names_are_opaque(open_process: Opener, route: str) -> None:
    first, second = await open_process(), await open_process()
    odd = f"{route} {{tag}} with spaces: ünïcode"
    await _open(first, odd)
    await eventually(lambda: second.breakers.local_state(odd) is CircuitState.OPEN)
    assert [s.state for s in await second.breakers.states() if s.route == odd] == [CircuitState.OPEN]
    assert second.breakers.local_state(route) is CircuitState.CLOSED


async def test_fewer_failures_or_failures_spread_beyond_the_window_leave_it_closed(open_process: Opener, route: str) -> None:
    process = await open_process()
    for _ in range(POLICY.failures - 1):
        await process.breakers.failed(Ticket(f"{route}-fewer"), "http_500")
    for _ in range(POLICY.failures + 1):  # one every 0.6 s: never three within the 1 s window
        await process.breakers.failed(Ticket(route), "http_500")
        await asyncio.sleep(0.6)
    assert await process.breakers.admit(route) == Ticket(route)
    assert await process.breakers.admit(f"{route}-fewer") == Ticket(f"{route}-fewer")
    assert process.transitions == []
    (state,) = [s for s in await process.breakers.states() if s.route == route]
    assert (state.state, state.opened_at, state.retry_at, state.last_failure) == (CircuitState.CLOSED, None, None, "http_500")
    assert state.failures == 1  # the last; the one before is 0.6 s older, and was read 0.6 s later


async def test_once_the_open_period_is_over_exactly_one_request_of_all_processes_gets_the_probe(
    open_process: Opener, route: str
) -> None:
    first, second = await open_process(), await open_process()
    await _open(first, route)
    await eventually(lambda: second.breakers.local_state(route) is CircuitState.OPEN)
    assert await second.breakers.admit(route) is None  # the open period runs
    await asyncio.sleep(POLICY.open_ms / 1000 + 0.1)

    tickets = await asyncio.gather(*(p.breakers.admit(route) for _ in range(25) for p in (first, second)))
    probes = [t for t in tickets if t is not None]
    assert len(probes) == 1 and probes[0].probe and len(tickets) == 50
    holder = first if first.transitions[-1:] == [(route, "half_open")] else second
    assert holder.transitions[-1] == (route, "half_open")
    for process in (first, second):
        await eventually(lambda p=process: p.breakers.local_state(route) is CircuitState.HALF_OPEN)  # type: ignore[misc]
    assert await first.breakers.admit(route) is None and await second.breakers.admit(route) is None


async def test_a_successful_probe_closes_the_breaker_for_every_process_at_once(open_process: Opener, route: str) -> None:
    first, second = await open_process(), await open_process()
    await _open(first, route)
    probe = await _probe(first, route)
    await eventually(lambda: second.breakers.local_state(route) is CircuitState.HALF_OPEN)
    await first.breakers.succeeded(probe)

    assert await first.breakers.admit(route) == Ticket(route)
    # The probe's lease (5 s) is far off: only the announcement can have told the second process.
    await eventually(lambda: second.breakers.local_state(route) is CircuitState.CLOSED, within=1.0)
    assert await second.breakers.admit(route) == Ticket(route)
    assert first.transitions == [(route, "open"), (route, "half_open"), (route, "closed")]
    (state,) = [s for s in await second.breakers.states() if s.route == route]
    assert (state.state, state.failures, state.opened_at, state.last_failure) == (CircuitState.CLOSED, 0, None, "http_503")
    for _ in range(POLICY.failures - 1):  # the window starts afresh
        await first.breakers.failed(Ticket(route), "http_503")
    assert first.breakers.local_state(route) is CircuitState.CLOSED


async def test_a_failed_probe_opens_the_breaker_again_at_once(open_process: Opener, route: str) -> None:
    first, second = await open_process(), await open_process()
    await _open(first, route)
    probe = await _probe(second, route)
    await second.breakers.failed(probe, "timeout")

    assert await second.breakers.admit(route) is None
    await eventually(lambda: first.breakers.local_state(route) is CircuitState.OPEN)
    assert await first.breakers.admit(route) is None
    assert second.transitions == [(route, "half_open"), (route, "open")]
    (state,) = [s for s in await first.breakers.states() if s.route == route]
    retry_at = parse_timestamp(state.retry_at)
    assert state.state is CircuitState.OPEN and retry_at is not None
    assert 0 < retry_at - time.time() <= POLICY.open_ms / 1000
    await _probe(first, route)  # and after another open period, a new probe


async def test_a_probe_whose_holder_vanished_is_claimable_again_once_its_lease_lapses(open_process: Opener, route: str) -> None:
    policy = POLICY.__class__(failures=3, window_ms=1000, open_ms=300, probe_ms=700)
    first, second = await open_process(policy), await open_process(policy)
    for _ in range(3):
        await first.breakers.failed(Ticket(route), "connection")
    await asyncio.sleep(0.4)
    lost = await first.breakers.admit(route)  # its holder never reports
    assert lost is not None and lost.probe
    await first.breakers.aclose()

    await asyncio.sleep(0.4)
    assert await second.breakers.admit(route) is None  # the lease still runs
    await asyncio.sleep(0.45)
    taken_over = await second.breakers.admit(route)
    assert taken_over is not None and taken_over.probe and taken_over.claim != lost.claim
    await first.breakers.succeeded(lost)  # a late answer of the lapsed probe changes nothing
    assert second.breakers.local_state(route) is CircuitState.HALF_OPEN
    await second.breakers.succeeded(taken_over)
    assert await second.breakers.admit(route) == Ticket(route)
    assert second.transitions == [(route, "half_open"), (route, "closed")]


async def test_closed_breakers_and_running_open_periods_cost_no_round_trip(open_process: Opener, route: str) -> None:
    process = await open_process()
    redis, breakers = process.redis, process.breakers
    recovered = f"{route}-recovered"  # one that opened and closed again
    await _open(process, recovered)
    await breakers.succeeded(await _probe(process, recovered))

    before = redis.sent
    for name in (route, recovered):
        for _ in range(500):
            ticket = await breakers.admit(name)
            assert ticket == Ticket(name)
            await breakers.succeeded(ticket)
    assert redis.sent == before
    costs = []
    for _ in range(POLICY.failures):
        sent = redis.sent
        await breakers.failed(Ticket(route), "http_503")
        costs.append(redis.sent - sent)
    assert costs == [2, 1, 2]  # the script; and the route's listing when its record is new and when it opens
    opened = redis.sent
    for _ in range(500):
        assert await breakers.admit(route) is None  # open: skipped without asking
    assert redis.sent == opened
    await asyncio.sleep(POLICY.open_ms / 1000 + 0.1)
    assert (await breakers.admit(route) or Ticket(route)).probe
    assert redis.sent == opened + 1  # the claim


async def test_a_process_whose_subscription_dropped_reloads_the_transitions_it_missed(
    open_process: Opener, route: str, redis_url: str
) -> None:
    watcher, other = await open_process(), await open_process()
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def subscriptions() -> list[str]:
        return [c["id"] for c in await admin.client_list(_type="pubsub") if c["name"] == watcher.name]

    began = time.monotonic()
    while not await subscriptions():
        assert time.monotonic() - began < 2
        await asyncio.sleep(0.01)
    for client_id in await subscriptions():
        await admin.client_kill_filter(_id=client_id)
    await _open(other, route)  # announced while nobody listened for the watcher (it resubscribes after 0.1 s)

    await eventually(lambda: watcher.breakers.local_state(route) is CircuitState.OPEN, within=3)
    await admin.aclose()
