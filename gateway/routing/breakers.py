"""Circuit breakers of upstream routes, shared by every gateway process through the store.

A route's breaker is closed (requests go through), open (the route is skipped until its open period ends) or
half-open (one probe request, across all processes, tests the route: its success closes the breaker, its
failure opens it again; a probe not reported within its lease may be claimed again). Each process mirrors
every breaker in a local table that the store's announcements keep current, so that a closed route costs no
round trip to Redis; only an open breaker whose period is over asks the store, to claim the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import StoreError
from gateway.store import BreakerPolicy, BreakerRecord, BreakerReply, BreakerStore, follow
from gateway.store.breakers import change_of
from gateway.timestamps import timestamp

logger = logging.getLogger(__name__)
_REASON_CHARS = 200  # a failure's reason is kept for the admin view, not as a log
_RELOAD_RETRY_SECONDS = 1.0


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """The state as the `gateway_breaker_state` gauge shows it: 0 closed, 1 half-open, 2 open."""
        return (CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN).index(self)


@dataclass(frozen=True)
class Ticket:
    """Leave to send one request on `route`; its outcome goes to `Breakers.succeeded` or `Breakers.failed`.
    A probe's outcome decides the breaker; `claim` identifies the probe ('' for an ordinary request)."""

    route: str
    probe: bool = False
    claim: str = ""


@dataclass(frozen=True)
class BreakerState:
    """A route's breaker as the store holds it now (times RFC 3339, None where they do not apply)."""

    route: str
    state: CircuitState
    failures: int  # within the window ending now
    opened_at: str | None  # when the current open (or half-open) spell began
    retry_at: str | None  # open: when a probe may first be sent; half-open: when the probe's lease lapses
    last_failure: str | None  # the last failure's reason
    last_failure_at: str | None


@dataclass(frozen=True)
class _Mirror:
    state: CircuitState
    gen: int  # the store's transition counter of the route: an older announcement never overwrites a newer one
    due: float  # monotonic time from which the probe may be claimed


class Breakers:
    """The breakers of all routes, as one process uses them.

    `start` loads every breaker and follows the announcements (reloading whenever the subscription was lost);
    `aclose` stops following. `transitioned(route, state)` is told of each transition this process makes.
    Route names are opaque (any string; it becomes a metric label, so never a URL with credentials). Whatever
    asks Redis raises StoreError when Redis fails."""

    def __init__(
        self, store: BreakerStore, policy: BreakerPolicy, transitioned: Callable[[str, str], None] = lambda *_: None
    ) -> None:
        self._store = store
        self._policy = policy
        self._transitioned = transitioned
        self._table: dict[str, _Mirror] = {}
        self._claiming: set[str] = set()  # routes whose probe this process is asking for now
        self._stale = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the breakers in the background: every one is loaded on each (re)subscription, so a Redis that
        is away at start delays the loading rather than the start (routes count as closed until then)."""
        self._task = asyncio.create_task(self._watch(), name="breakers.watch")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def admit(self, route: str) -> Ticket | None:
        """A ticket to send a request on `route`, or None while its breaker is open (skip the route).

        No round trip while the breaker is closed, or open with its period running; once the period is over,
        one call tries to claim the route's single probe: the ticket of the one request (of all processes) that
        gets it says `probe`, every other request gets None until the probe has answered or its lease lapsed."""
        mirror = self._table.get(route)
        if mirror is None or mirror.state is CircuitState.CLOSED:
            return Ticket(route)
        if time.monotonic() < mirror.due or route in self._claiming:
            return None
        return await self._claim(route)

    async def succeeded(self, ticket: Ticket) -> None:
        """The request of `ticket` succeeded: a probe closes the breaker everywhere; anything else costs nothing."""
        if ticket.probe:
            self._apply(ticket.route, await self._store.close(ticket.route, ticket.claim))

    async def failed(self, ticket: Ticket, reason: str) -> None:
        """The request of `ticket` failed (`reason`: short, without secrets): counted in the route's window,
        which opens the breaker at `policy.failures`; a probe's failure re-opens it at once."""
        member = secrets.token_hex(8)
        reply = await self._store.fail(ticket.route, member, reason[:_REASON_CHARS], ticket.claim, self._policy)
        self._apply(ticket.route, reply)

    def local_state(self, route: str) -> CircuitState:
        """This process's view of the breaker of `route` (no round trip): what `admit` goes by."""
        mirror = self._table.get(route)
        return CircuitState.CLOSED if mirror is None else mirror.state

    async def states(self) -> list[BreakerState]:
        """Every breaker with a record in the store, by route, read now (the same from every process)."""
        return [_state_of(record) for record in await self._store.records(self._policy.window_ms)]

    async def _claim(self, route: str) -> Ticket | None:
        claim = secrets.token_hex(8)
        self._claiming.add(route)
        try:
            reply = await self._store.claim(route, claim, self._policy.probe_ms)
        finally:
            self._claiming.discard(route)
        self._apply(route, reply)
        if reply.changed:
            return Ticket(route, probe=True, claim=claim)
        return Ticket(route) if reply.state == CircuitState.CLOSED else None

    def _apply(self, route: str, reply: BreakerReply) -> None:
        self._mirror(route, reply.state, reply.gen, reply.wait_ms)
        if reply.changed:
            self._transitioned(route, reply.state)

    def _announced(self, announcement: str) -> None:
        change = change_of(announcement)
        self._mirror(change.route, change.state, change.gen, change.wait_ms)

    def _mirror(self, route: str, state: str, gen: int, wait_ms: int) -> None:
        current = self._table.get(route)
        if gen == 0:  # no record (the store was emptied): closed
            self._table.pop(route, None)
        elif current is None or gen >= current.gen:
            self._table[route] = _Mirror(CircuitState(state), gen, time.monotonic() + wait_ms / 1000)

    async def _watch(self) -> None:
        await asyncio.gather(follow("breaker change", self._store.changes, self._announced, self._stale.set), self._reloads())

    async def _reloads(self) -> None:
        """Reload every breaker whenever announcements may have been missed (on each new subscription)."""
        while True:
            await self._stale.wait()
            self._stale.clear()
            try:
                await self._reload()
            except StoreError as exc:
                logger.warning("breakers not reloaded (%s); retrying in %.1fs", exc.detail, _RELOAD_RETRY_SECONDS)
                await asyncio.sleep(_RELOAD_RETRY_SECONDS)
                self._stale.set()

    async def _reload(self) -> None:
        for record in await self._store.records(self._policy.window_ms):
            self._mirror(record.route, record.state, record.gen, record.wait_ms)


def _state_of(record: BreakerRecord) -> BreakerState:
    return BreakerState(
        route=record.route,
        state=CircuitState(record.state),
        failures=record.failures,
        opened_at=_time(record.opened_at_ms),
        retry_at=_time(record.retry_at_ms),
        last_failure=record.reason,
        last_failure_at=_time(record.failed_at_ms),
    )


def _time(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else timestamp(epoch_ms / 1000)
