"""Checking creates and reads against key and tenant limits, and the admin operations on limits and balances.

Each check is one atomic script over the tenant's counters (`store.limits`), so limits hold exactly across
all gateway processes. A create's check rides in the same round trip as the create's first write. The
settings themselves are cached per process like keys are: at most `cache_seconds`, and dropped at once when
any process publishes a change.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from redis.asyncio.client import Pipeline

from gateway.audit import Actor, AuditEvent, Subject
from gateway.errors import GatewayError, PaymentRequired, TooManyRequests
from gateway.keys import KeyRecord
from gateway.limits.rules import NO_LIMITS, Limits
from gateway.store import LimitStore, Read, Refusal, StoredPrediction, follow
from gateway.store.limits import refusal
from gateway.usage.money import amount_text, period_end, periods_of, to_nanos

_MAX_CACHED = 100_000
_TENANT_SCOPE = "tenant"


def key_scope(key_id: str) -> str:
    return f"key:{key_id}"


@dataclass(frozen=True)
class Admission:
    """A create's limits check, queued with the create's first write; `verdict` raises when it was refused."""

    queue: Callable[[Pipeline], Awaitable[None]]
    estimate: int
    refused: Callable[[str], None]  # counts a refusal by reason

    def verdict(self, reply: Sequence[Any]) -> None:
        refused = refusal(reply)
        if refused is not None:
            self.refused(refused.kind)
            raise over_limit(refused, self.estimate)


@dataclass(frozen=True)
class ReadCount:
    """A read's count against the read rates, queued with the read's own store round trip; `verdict` raises
    when it was refused."""

    queue: Callable[[Pipeline], Awaitable[None]]
    refused: Callable[[str], None]  # counts a refusal by reason

    def verdict(self, reply: Sequence[Any]) -> None:
        refused = refusal(reply)
        if refused is not None:
            self.refused(refused.kind)
            raise over_limit(refused, 0, reads=True)


class LimitsService:
    def __init__(
        self, store: LimitStore, cache_seconds: float, running_seconds: int, refused: Callable[[str], None] = lambda _: None
    ) -> None:
        self._store = store
        self._refused = refused
        self._cache_seconds = cache_seconds
        self._running_ms = running_seconds * 1000
        self._cache: dict[str, tuple[dict[str, Limits], float]] = {}

    async def admission(self, key: KeyRecord, record: StoredPrediction, estimate: int) -> Admission:
        settings = await self._settings(key.tenant)
        now_ms = int(time.time() * 1000)
        scopes = (
            settings.get(_TENANT_SCOPE, NO_LIMITS).for_script(now_ms),
            settings.get(key_scope(key.key_id), NO_LIMITS).for_script(now_ms),
        )
        periods = periods_of(record.created_ms)

        async def queue(pipe: Pipeline) -> None:
            await self._store.admit_on(pipe, key.tenant, key.key_id, record.id, estimate, periods, scopes, self._running_ms)

        return Admission(queue, estimate, self._refused)

    async def check_read(self, key: KeyRecord) -> None:
        """Count a read against the read rates, if any apply, in a round trip of its own (none when none does)."""
        count = await self.read_count(key)
        if count is not None:
            count.verdict(await self._store.alone(count.queue))

    async def read_count(self, key: KeyRecord) -> ReadCount | None:
        """The count of a read against the read rates, to queue with the read itself; None when none applies."""
        settings = await self._settings(key.tenant)
        tenant_limit = settings.get(_TENANT_SCOPE, NO_LIMITS).reads_per_minute
        key_limit = settings.get(key_scope(key.key_id), NO_LIMITS).reads_per_minute
        if tenant_limit is None and key_limit is None:
            return None
        read = Read(
            key.tenant,
            key.key_id,
            secrets.token_hex(8),
            -1 if tenant_limit is None else tenant_limit,
            -1 if key_limit is None else key_limit,
        )

        async def queue(pipe: Pipeline) -> None:
            await self._store.admit_read_on(pipe, read)

        return ReadCount(queue, self._refused)

    async def watch(self) -> None:
        """Drop cached settings as changes are announced; runs until cancelled."""
        await follow("limits change", self._store.changes, self._evict, self._cache.clear)

    # --- admin ---------------------------------------------------------------------------------------------

    async def limits_of(self, tenant: str) -> dict[str, Limits]:
        """Every scope's settings of the tenant, fresh from the store: `tenant` and `key:<key id>`."""
        return {scope: Limits.model_validate(raw) for scope, raw in (await self._store.settings(tenant)).items()}

    async def set_limits(self, tenant: str, key_id: str | None, limits: Limits | None, *, actor: Actor) -> None:
        """Replace (None: remove) the limits of a tenant, or of one of its keys."""
        scope = key_scope(key_id) if key_id else _TENANT_SCOPE
        before = (await self.limits_of(tenant)).get(scope)
        event = AuditEvent(
            action="limits.set" if limits is not None else "limits.remove",
            subject=_subject(tenant, key_id),
            tenants=(tenant,),
            actor=actor,
            before=None if before is None else before.public(),
            after=None if limits is None else limits.public(),
        )
        await self._store.change(tenant, scope, None if limits is None else limits.public(), event.fields())

    async def add_balance(self, tenant: str, key_id: str | None, amount: Decimal, *, actor: Actor) -> str:
        """Top up (or, negative, take from) a prepaid balance; the balance after, as an exact decimal string."""
        event = AuditEvent(
            action="balance.add",
            subject=_subject(tenant, key_id),
            tenants=(tenant,),
            actor=actor,
            before=None,
            after={"amount": amount_text(to_nanos(amount))},
        )
        return amount_text(await self._store.add_balance(tenant, key_id, to_nanos(amount), event.fields()))

    async def report_keys(self, keys: Sequence[KeyRecord], tenant: str | None = None) -> list[dict[str, Any]]:
        """`report` for every tenant of `keys` (and `tenant`, even without keys), tenant by tenant."""
        by_tenant: dict[str, list[str]] = {tenant: []} if tenant else {}
        for key in keys:
            by_tenant.setdefault(key.tenant, []).append(key.key_id)
        return [entry for name, key_ids in sorted(by_tenant.items()) for entry in await self.report(name, key_ids)]

    async def report(self, tenant: str, key_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The tenant's and the keys' limits with their current state: running predictions, balance, spending."""
        settings = await self.limits_of(tenant)
        now_ms = int(time.time() * 1000)
        scopes: list[str | None] = [None, *key_ids]
        states = await self._store.state(tenant, scopes, periods_of(now_ms), now_ms)
        entries = []
        for key_id, state in zip(scopes, states, strict=True):
            limits = settings.get(key_scope(key_id) if key_id else _TENANT_SCOPE, NO_LIMITS)
            budget = limits.budget
            spent = state.spent_month if budget is not None and budget.period == "month" else state.spent_day
            remaining = None
            if budget is not None:
                remaining = max(to_nanos(budget.amount) - spent, 0)
            if limits.prepaid:
                remaining = state.balance if remaining is None else min(remaining, state.balance)
            entries.append(
                {
                    "scope": "key" if key_id else "tenant",
                    "id": key_id or tenant,
                    "tenant": tenant,
                    "limits": limits.public(),
                    "state": {
                        "concurrent": state.running,
                        "balance": amount_text(state.balance) if limits.prepaid or state.balance else None,
                        "spent": amount_text(spent),
                        "spent_today": amount_text(state.spent_day),
                        "spent_this_month": amount_text(state.spent_month),
                        "remaining": None if remaining is None else amount_text(max(remaining, 0)),
                        "period_resets_at": None
                        if budget is None
                        else period_end(now_ms, budget.period[0]).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                }
            )
        return entries

    def _evict(self, tenant: str) -> None:
        self._cache.pop(tenant, None)

    async def _settings(self, tenant: str) -> dict[str, Limits]:
        cached = self._cache.get(tenant)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        settings = await self.limits_of(tenant)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[tenant] = (settings, time.monotonic())
        return settings


def over_limit(refused: Refusal, estimate: int, *, reads: bool = False) -> GatewayError:
    """The 429 or 402 for a refusal. Money in the RateLimit fields is in micro-units (10⁻⁶ of the currency)."""
    who = f"this {refused.scope}" if refused.scope == "key" else "your account"
    retry = None if refused.retry_ms < 0 else max(math.ceil(refused.retry_ms / 1000), 1)
    if refused.kind == "rate":
        what = "reads" if reads else "predictions created"
        return TooManyRequests(
            f"Request was throttled: {who} allows {refused.limit} {what} per minute. Expected available in {retry} seconds.",
            limit=refused.limit,
            remaining=0,
            reset_seconds=retry,
        )
    if refused.kind == "concurrency":
        return TooManyRequests(
            f"Request was throttled: {who} may have {refused.limit} unfinished predictions at a time; wait for one to finish.",
            limit=refused.limit,
            remaining=0,
            reset_seconds=retry,
        )
    remaining = max(refused.remaining, 0)
    if refused.kind == "balance":
        detail = (
            f"The prepaid balance of {who} ({amount_text(remaining)}) cannot cover this prediction's estimated "
            f"cost ({amount_text(estimate)}); top it up to create predictions."
        )
    else:
        detail = (
            f"The spending budget of {who} ({amount_text(refused.limit)} per period) does not cover this prediction's "
            f"estimated cost ({amount_text(estimate)}); {amount_text(remaining)} remains until it renews in {retry} seconds."
        )
    return PaymentRequired(detail, limit=refused.limit // 1000, remaining=remaining // 1000, reset_seconds=retry)


def _subject(tenant: str, key_id: str | None) -> Subject:
    return Subject("key", key_id) if key_id else Subject("tenant", tenant)
