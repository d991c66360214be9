"""Limits of keys and tenants: their settings, the counters they are checked against, and the one-script checks.

Everything of a tenant lives in its Redis Cluster slot (hash tag `{<tenant>}`), so a create's whole check,
for the key and its tenant at once, is one atomic script:
`gw:limits:{T}` (hash: `tenant` and `key:<key id>` settings as JSON), `…:creates[:<key>]` and
`…:reads[:<key>]` (sliding one-minute logs: sorted sets scored by time), `…:running[:<key>]` (unfinished
predictions, scored by when their entry lapses should settlement never come), `…:holds` (what each admitted
prediction pre-charged), `…:balance[:<key>]` (prepaid balances) and `…:spent[:<key>]:<period>` (money spent per
UTC day `d20261201` and month `m202612`, pre-charges included). Money is kept in whole nano-units (10⁻⁹ of the
currency) as Redis integers; the scripts pass amounts through as strings and never do arithmetic on them in Lua
(whose numbers are doubles) beyond comparisons.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from gateway.store import scripts
from gateway.store.audit import AuditFields, AuditStore
from gateway.store.redis import mapped_errors, messages

CHANGES_CHANNEL = "gw:limits:changed"
WINDOW_MS = 60_000
SPENT_TTL_SECONDS = {"d": 3 * 24 * 3600, "m": 63 * 24 * 3600}

# The checks of one scope, shared by both scripts. `now` is the server's clock (one clock for all processes).
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function window(key, n)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - __WINDOW_MS__)
  local used = redis.call('ZCARD', key)
  if used < n then return nil end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, 'rate', n, 0, tonumber(oldest[2]) + __WINDOW_MS__ - now}
end
-- The rate logs KEYS[1] (tenant) and KEYS[2] (key) against ARGV[first] and ARGV[first + step] (-1: no limit):
-- the refusal, or nil when both admit; `record` then logs `member` in each limited one.
local function rates(first, step)
  for s = 1, 2 do
    local n = tonumber(ARGV[first + (s - 1) * step])
    if n >= 0 then
      local refused = window(KEYS[s], n)
      if refused then refused[6] = s return refused end
    end
  end
  return nil
end
local function record(first, step, member)
  for s = 1, 2 do
    if tonumber(ARGV[first + (s - 1) * step]) >= 0 then
      redis.call('ZADD', KEYS[s], now, member)
      redis.call('PEXPIRE', KEYS[s], __WINDOW_MS__)
    end
  end
end
""".replace("__WINDOW_MS__", str(WINDOW_MS))

# KEYS: 1 tenant creates log, 2 key creates log, 3 tenant running, 4 key running, 5 holds, 6 tenant balance,
# 7 key balance, 8 tenant spent this day, 9 tenant spent this month, 10 key spent this day, 11 key spent this month.
# ARGV: 1 prediction id, 2 estimate, 3 running entry lifetime ms, 4 day spent ttl, 5 month spent ttl, then per
# scope (tenant at 6, key at 12): creates per minute, concurrent, prepaid (0/1), budget, budget period (d/m/-),
# ms until the budget period ends; -1 where there is no limit.
# Returns {1} when admitted (and charged), else {0, kind, limit, remaining, ms until worth retrying (-1: never),
# scope index (1 tenant, 2 key)}.
_ADMIT = (
    _COMMON
    + """
local estimate = tonumber(ARGV[2])
local refused = rates(6, 6)
if refused then return refused end
for s = 1, 2 do
  local k = tonumber(ARGV[7 + (s - 1) * 6])
  if k >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 + s], '-inf', now)
    local running = redis.call('ZCARD', KEYS[2 + s])
    if running >= k then return {0, 'concurrency', k, 0, 1000, s} end
  end
end
for s = 1, 2 do
  local a = 6 + (s - 1) * 6
  if ARGV[a + 2] == '1' then
    local balance = tonumber(redis.call('GET', KEYS[5 + s]) or '0')
    if balance <= 0 or balance < estimate then return {0, 'balance', 0, balance, -1, s} end
  end
  local budget = tonumber(ARGV[a + 3])
  if budget >= 0 then
    local spent_key = KEYS[8 + (s - 1) * 2 + (ARGV[a + 4] == 'm' and 1 or 0)]
    local spent = tonumber(redis.call('GET', spent_key) or '0')
    if spent >= budget or spent + estimate > budget then
      return {0, 'budget', budget, math.max(budget - spent, 0), tonumber(ARGV[a + 5]), s}
    end
  end
end
record(6, 6, ARGV[1])
for s = 1, 2 do
  redis.call('ZADD', KEYS[2 + s], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2 + s], ARGV[3])
end
for i = 8, 11 do
  redis.call('INCRBY', KEYS[i], ARGV[2])
  redis.call('EXPIRE', KEYS[i], (i % 2 == 0) and ARGV[4] or ARGV[5])
end
local prepaid = {}
for s = 1, 2 do
  prepaid[s] = ARGV[8 + (s - 1) * 6]
  if prepaid[s] == '1' then redis.call('DECRBY', KEYS[5 + s], ARGV[2]) end
end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2] .. '|' .. prepaid[1] .. '|' .. prepaid[2])
return {1}
"""
).replace("__WINDOW_MS__", str(WINDOW_MS))

# KEYS: 1 tenant reads log, 2 key reads log; ARGV: 1 a member unique to this request, 2 tenant per minute,
# 3 key per minute (-1: none). Returns {1} or the refusal as _ADMIT does.
_READ = (
    _COMMON
    + """
local refused = rates(2, 1)
if refused then return refused end
record(2, 1, ARGV[1])
return {1}
"""
).replace("__WINDOW_MS__", str(WINDOW_MS))


@dataclass(frozen=True)
class ScopeLimits:
    """One scope's limits as the scripts take them; -1 (or `prepaid` False, `budget_period` "-") means none."""

    creates_per_minute: int = -1
    reads_per_minute: int = -1
    concurrent: int = -1
    prepaid: bool = False
    budget: int = -1  # nano-units per period
    budget_period: str = "-"  # "d" or "m"
    period_left_ms: int = -1


@dataclass(frozen=True)
class Read:
    """One read to count against the read rates per minute of its tenant and key (-1: none); `member` is the
    read's own entry in their sliding logs."""

    tenant: str
    key_id: str
    member: str
    tenant_limit: int
    key_limit: int


@dataclass(frozen=True)
class Refusal:
    kind: str  # rate, concurrency, balance, budget
    limit: int
    remaining: int
    retry_ms: int  # -1: waiting does not help
    scope: str  # tenant or key


@dataclass(frozen=True)
class Periods:
    """The spending periods a charge falls into: `d20261201`, `m202612`."""

    day: str
    month: str


@dataclass(frozen=True)
class ScopeState:
    running: int
    balance: int
    spent_day: int
    spent_month: int


class LimitStore:
    def __init__(self, redis: aioredis.Redis, audit: AuditStore) -> None:
        self._redis = redis
        self._audit = audit
        self._admit = redis.register_script(_ADMIT)
        self._read = redis.register_script(_READ)

    async def admit_on(
        self,
        pipe: Pipeline,
        tenant: str,
        key_id: str,
        prediction_id: str,
        estimate: int,
        periods: Periods,
        scopes: tuple[ScopeLimits, ScopeLimits],
        running_ms: int,
    ) -> None:
        """Queue on `pipe` the check of a create against its tenant's and key's limits, which when it passes also
        counts the create and pre-charges `estimate` (its reply goes to `refusal`)."""
        base = _base(tenant)
        keys = [
            f"{base}:creates",
            f"{base}:creates:{key_id}",
            f"{base}:running",
            f"{base}:running:{key_id}",
            f"{base}:holds",
            f"{base}:balance",
            f"{base}:balance:{key_id}",
            *spent_keys(tenant, key_id, periods),
        ]
        args: list[Any] = [prediction_id, estimate, running_ms, SPENT_TTL_SECONDS["d"], SPENT_TTL_SECONDS["m"]]
        for scope in scopes:
            args += [
                scope.creates_per_minute,
                scope.concurrent,
                "1" if scope.prepaid else "0",
                scope.budget,
                scope.budget_period,
                scope.period_left_ms,
            ]
        await self._admit(keys=keys, args=args, client=pipe)

    async def admit_read_on(self, pipe: Pipeline, read: Read) -> None:
        """Queue on `pipe` the count of a read against its tenant's and key's read rates (its reply goes to
        `refusal`)."""
        base = _base(read.tenant)
        keys = [f"{base}:reads", f"{base}:reads:{read.key_id}"]
        await self._read(keys=keys, args=[read.member, read.tenant_limit, read.key_limit], client=pipe)

    async def alone(self, queue: Callable[[Pipeline], Awaitable[None]]) -> Any:
        """Run one queued script (`admit_read_on`) in a round trip of its own; its reply."""
        async with self._redis.pipeline(transaction=False) as pipe:
            await queue(pipe)
            with mapped_errors(self._redis):
                [reply] = await scripts.execute(pipe)
        return reply

    async def settings(self, tenant: str) -> dict[str, dict[str, Any]]:
        """The tenant's limit settings by scope: `tenant` and `key:<key id>`."""
        with mapped_errors(self._redis):
            raw = await self._redis.hgetall(_base(tenant))
        return {str(name): json.loads(value) for name, value in raw.items()}

    async def change(self, tenant: str, scope: str, settings: Mapping[str, Any] | None, audit: AuditFields) -> None:
        """Store a scope's settings (None: drop them) with its audit entry, and tell every process."""
        with mapped_errors(self._redis):
            if settings is None:
                await self._redis.hdel(_base(tenant), scope)
            else:
                await self._redis.hset(_base(tenant), scope, json.dumps(settings, separators=(",", ":")))
            await self._audit.append(audit)  # after the change: the audit log is in another hash slot
            await self._redis.publish(CHANGES_CHANNEL, tenant)

    async def add_balance(self, tenant: str, key_id: str | None, amount: int, audit: AuditFields) -> int:
        """Add `amount` (negative: take away) to a prepaid balance; the balance after."""
        key = f"{_base(tenant)}:balance" + (f":{key_id}" if key_id else "")
        with mapped_errors(self._redis):
            balance = await self._redis.incrby(key, amount)
            await self._audit.append(audit)  # after the change: the audit log is in another hash slot
        return int(balance)

    async def state(self, tenant: str, key_ids: Sequence[str | None], periods: Periods, now_ms: int) -> list[ScopeState]:
        """Counters of the tenant (key id None) and of keys, in order."""
        base = _base(tenant)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                suffix = f":{key_id}" if key_id else ""
                pipe.zcount(f"{base}:running{suffix}", now_ms, "+inf")
                pipe.get(f"{base}:balance{suffix}")
                pipe.get(f"{base}:spent{suffix}:{periods.day}")
                pipe.get(f"{base}:spent{suffix}:{periods.month}")
            with mapped_errors(self._redis):
                replies = await pipe.execute()
        return [ScopeState(*(int(value or 0) for value in replies[i : i + 4])) for i in range(0, len(replies), 4)]

    async def changes(self) -> Any:
        """Tenants whose settings changed; first an empty string once subscribed."""
        async for message in messages(self._redis, channel=CHANGES_CHANNEL):
            yield "" if message is None else message[1]


def refusal(reply: Sequence[Any]) -> Refusal | None:
    """What an admission script answered: None when admitted."""
    if int(reply[0]) == 1:
        return None
    kind, limit, remaining, retry_ms, scope = reply[1:6]
    return Refusal(str(kind), int(limit), int(remaining), int(retry_ms), "tenant" if int(scope) == 1 else "key")


def spent_keys(tenant: str, key_id: str, periods: Periods) -> list[str]:
    """Tenant day, tenant month, key day, key month."""
    base = _base(tenant)
    return [
        f"{base}:spent:{periods.day}",
        f"{base}:spent:{periods.month}",
        f"{base}:spent:{key_id}:{periods.day}",
        f"{base}:spent:{key_id}:{periods.month}",
    ]


def holds_key(tenant: str) -> str:
    return f"{_base(tenant)}:holds"


def running_keys(tenant: str, key_id: str) -> list[str]:
    return [f"{_base(tenant)}:running", f"{_base(tenant)}:running:{key_id}"]


def balance_keys(tenant: str, key_id: str) -> list[str]:
    return [f"{_base(tenant)}:balance", f"{_base(tenant)}:balance:{key_id}"]


def _base(tenant: str) -> str:
    return f"gw:limits:{{{tenant}}}"
