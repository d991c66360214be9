"""Usage records: settlement of finished predictions, hourly aggregates, per-prediction rows and running totals.

One tenant's usage shares its Redis Cluster slot with its limits (hash tag `{<tenant>}`), so settling a
prediction is one atomic script that records its usage, releases its concurrency slot and settles its
pre-charge together, and does so once: the prediction's id goes into a set of settled ids first
(`gw:usage:{T}:settled:<creation day>`), and a second settlement of the same id changes nothing.

Keys: `gw:usage:{T}:h:<hour>` (hash of integer counters per `key|model|version|provider|measure`),
`…:hours` (the hours that have usage), `…:totals` (all-time counters per `key|model|measure`, which the
Prometheus usage metrics show), `…:rows` (a stream of one entry per prediction, trimmed by age), and
`gw:usage:tenants` (every tenant with usage). Measures: `succeeded`, `failed`, `canceled` (counts),
`predict_us`, `total_us` (microseconds), `outputs`, `cost` (nano-units of the currency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.store import scripts
from gateway.store.limits import Periods, balance_keys, holds_key, running_keys, spent_keys
from gateway.store.redis import mapped_errors

TENANTS = "gw:usage:tenants"
SEPARATOR = "|"

# KEYS: 1 settled ids, 2 hour counters, 3 hours index, 4 totals, 5 rows, 6 holds, 7 tenant running, 8 key running,
# 9-12 spent (tenant day, tenant month, key day, key month), 13 tenant balance, 14 key balance.
# ARGV: 1 prediction id, 2 settled-set ttl, 3 hour (epoch s), 4 aggregate ttl, 5 hour field prefix, 6 totals field
# prefix, 7 status ("" = void: a create that never ran, release only), 8 predict µs, 9 total µs, 10 outputs,
# 11 cost, 12 oldest row id kept (ms), 13 day spent ttl, 14 month spent ttl, 15... row field/value pairs.
# Returns 1 when settled now, 0 when it had been settled before.
_SETTLE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local estimate, prepaid = '0', {'0', '0'}
local hold = redis.call('HGET', KEYS[6], ARGV[1])
if hold then
  local parts = {}
  for part in string.gmatch(hold, '[^|]+') do parts[#parts + 1] = part end
  estimate, prepaid = parts[1], {parts[2], parts[3]}
  redis.call('HDEL', KEYS[6], ARGV[1])
end
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('ZREM', KEYS[8], ARGV[1])
local cost = (ARGV[7] == '') and '0' or ARGV[11]
for i = 9, 12 do
  redis.call('INCRBY', KEYS[i], cost)
  redis.call('DECRBY', KEYS[i], estimate)
  redis.call('EXPIRE', KEYS[i], (i % 2 == 1) and ARGV[13] or ARGV[14])
end
for s = 1, 2 do
  if prepaid[s] == '1' then
    redis.call('INCRBY', KEYS[12 + s], estimate)
    redis.call('DECRBY', KEYS[12 + s], cost)
  end
end
if ARGV[7] == '' then return 1 end
local measures = {[ARGV[7]] = 1, predict_us = ARGV[8], total_us = ARGV[9], outputs = ARGV[10], cost = ARGV[11]}
for name, amount in pairs(measures) do
  redis.call('HINCRBY', KEYS[2], ARGV[5] .. '|' .. name, amount)
  redis.call('HINCRBY', KEYS[4], ARGV[6] .. '|' .. name, amount)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local row = {}
for i = 15, #ARGV do row[#row + 1] = ARGV[i] end
redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[12], '*', unpack(row))
return 1
"""


@dataclass(frozen=True)
class Settlement:
    """What one finished prediction used, as recorded; `status` empty for a create that never ran (its
    pre-charge is released and nothing is recorded)."""

    prediction_id: str
    tenant: str
    key_id: str
    model: str
    version: str
    provider: str
    status: str
    predict_us: int
    total_us: int
    outputs: int
    cost: int  # nano-units
    hour: int  # epoch seconds of the hour it finished in
    periods: Periods  # the spending periods of its creation (where its pre-charge went)
    row: dict[str, str]


@dataclass(frozen=True)
class HourCounters:
    hour: int
    counters: dict[str, int]  # `key|model|version|provider|measure` → amount


@dataclass(frozen=True)
class Retention:
    settled_seconds: int  # how long a settled id is remembered: longer than anything may settle it again
    aggregate_seconds: int
    row_seconds: int
    spent_day_seconds: int
    spent_month_seconds: int


class UsageStore:
    def __init__(self, redis: aioredis.Redis, retention: Retention) -> None:
        self._redis = redis
        self._retention = retention
        self._settle = redis.register_script(_SETTLE)

    async def settle(self, usage: Settlement, now_ms: int) -> bool:
        """Record `usage` unless its prediction was settled before; True when recorded now."""
        base = _base(usage.tenant)
        keep = self._retention
        keys = [
            f"{base}:settled:{usage.periods.day}",
            f"{base}:h:{usage.hour}",
            f"{base}:hours",
            f"{base}:totals",
            f"{base}:rows",
            holds_key(usage.tenant),
            *running_keys(usage.tenant, usage.key_id),
            *spent_keys(usage.tenant, usage.key_id, usage.periods),
            *balance_keys(usage.tenant, usage.key_id),
        ]
        group = SEPARATOR.join((usage.key_id, usage.model, usage.version, usage.provider))
        args: list[str | int] = [
            usage.prediction_id,
            keep.settled_seconds,
            usage.hour,
            keep.aggregate_seconds,
            group,
            SEPARATOR.join((usage.key_id, usage.model)),
            usage.status,
            usage.predict_us,
            usage.total_us,
            usage.outputs,
            usage.cost,
            now_ms - keep.row_seconds * 1000,
            keep.spent_day_seconds,
            keep.spent_month_seconds,
            *(item for pair in usage.row.items() for item in pair),
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._settle(keys=keys, args=args, client=pipe)
            if usage.status:
                pipe.sadd(TENANTS, usage.tenant)
            with mapped_errors(self._redis):
                settled, *_ = await scripts.execute(pipe)
        return int(settled) == 1

    async def tenants(self) -> list[str]:
        with mapped_errors(self._redis):
            return sorted(str(tenant) for tenant in await self._redis.smembers(TENANTS))

    async def hours(self, tenants: Sequence[str], first_hour: int, last_hour: int) -> dict[str, list[HourCounters]]:
        """Each tenant's hourly counters from `first_hour` to `last_hour` (epoch seconds, inclusive)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.zrange(f"{_base(tenant)}:hours", first_hour, last_hour, byscore=True)
            with mapped_errors(self._redis):
                hour_lists = await pipe.execute()
        wanted = [(tenant, int(hour)) for tenant, hours in zip(tenants, hour_lists, strict=True) for hour in hours]
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant, hour in wanted:
                pipe.hgetall(f"{_base(tenant)}:h:{hour}")
            with mapped_errors(self._redis):
                rows = await pipe.execute() if wanted else []
        found: dict[str, list[HourCounters]] = {tenant: [] for tenant in tenants}
        for (tenant, hour), counters in zip(wanted, rows, strict=True):
            found[tenant].append(HourCounters(hour, {str(k): int(v) for k, v in counters.items()}))
        return found

    async def totals(self, tenants: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each tenant's all-time counters, `key|model|measure` → amount."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hgetall(f"{_base(tenant)}:totals")
            with mapped_errors(self._redis):
                replies = await pipe.execute() if tenants else []
        return {t: {str(k): int(v) for k, v in reply.items()} for t, reply in zip(tenants, replies, strict=True)}

    async def rows(self, tenant: str, since_ms: int, until_ms: int, count: int) -> list[tuple[str, dict[str, str]]]:
        """Per-prediction rows recorded from `since_ms` up to `until_ms` (exclusive), oldest first."""
        with mapped_errors(self._redis):
            entries = await self._redis.xrange(f"{_base(tenant)}:rows", f"{since_ms}-0", f"({until_ms}-0", count=count)
        return [(str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()}) for entry_id, fields in entries or []]


def _base(tenant: str) -> str:
    return f"gw:usage:{{{tenant}}}"
