"""Circuit breakers of upstream routes: their shared state, the failure windows, and the atomic transitions.

A route's keys share its Redis Cluster slot (hash tag `{<route>}`): `gw:breaker:{R}` (hash: `state` closed, open
or half_open; `gen`, raised by every transition; `opened_at` and `retry_at` of an open period; `probe` and
`probe_until`, the single half-open probe's claim and lease; `reason` and `failed_at` of the last failure) and
`gw:breaker:{R}:failures` (the sliding failure window: a sorted set scored by time). Each transition is one
script, which also announces it on `gw:breaker:changed` as `<state> <gen> <ms until the next probe> <route>`;
scripts run one at a time, so announcements arrive in the order of the transitions. Times are the server's
clock, one for all processes. `gw:breakers:routes` lists every route that has a record (for the admin view);
it is another slot, so it is written after the script, never inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors, messages

CHANGES_CHANNEL = "gw:breaker:changed"
_ROUTES = "gw:breakers:routes"
_FIELDS = ("state", "gen", "opened_at", "retry_at", "probe_until", "reason", "failed_at")

# Shared by every script: the server's clock, and `announce`, which records a transition into `state` (the next
# probe may be claimed at `due`), publishes it and returns the reply every script gives: {changed, state, gen,
# ms until due}. KEYS[1] is the route's hash, ARGV[1] the route.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function announce(state, due)
  local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('PUBLISH', '__CHANNEL__', state .. ' ' .. gen .. ' ' .. (due - now) .. ' ' .. ARGV[1])
  return {1, state, gen, due - now}
end
local function unchanged()
  local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'retry_at', 'probe_until')
  local state = h[1] or 'closed'
  local due = now
  if state == 'open' then due = tonumber(h[3]) elseif state == 'half_open' then due = tonumber(h[4]) end
  return {0, state, tonumber(h[2] or '0'), math.max(due - now, 0)}
end
local function open(open_ms)
  redis.call('HSET', KEYS[1], 'opened_at', now, 'retry_at', now + open_ms)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  return announce('open', now + open_ms)
end
""".replace("__CHANNEL__", CHANGES_CHANNEL)

# KEYS: 1 hash, 2 failure window. ARGV: 1 route, 2 a member unique to this failure, 3 reason, 4 the probe claim
# ('' for an ordinary request), 5 failures that open, 6 window ms, 7 open ms. The reply, then 1 when the
# record is new. A closed breaker counts the failure and opens at the threshold; the current probe's failure
# re-opens at once; any other failure (a request let in before the breaker opened) only leaves its reason.
_FAIL = (
    _COMMON
    + """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[3], 'failed_at', now)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local reply
if state == 'half_open' and ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'probe') == ARGV[4] then
  reply = open(tonumber(ARGV[7]))
elseif state == 'closed' then
  local window = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], window)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then reply = open(tonumber(ARGV[7])) end
end
reply = reply or unchanged()
reply[5] = 1 - existed
return reply
"""
)

# KEYS: 1 hash. ARGV: 1 route, 2 the new claim, 3 its lease ms. Grants the probe (the reply's `changed` is 1)
# when the open period is over, or the last probe's lease has lapsed (its holder died or forgot it).
_CLAIM = (
    _COMMON
    + """
local reply = unchanged()
if reply[2] == 'closed' or reply[4] > 0 then return reply end
local lease = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'probe', ARGV[2], 'probe_until', now + lease)
return announce('half_open', now + lease)
"""
)

# KEYS: 1 hash, 2 failure window. ARGV: 1 route, 2 the probe's claim. Closes the breaker if that probe is
# still the current one (once another request has taken over a lapsed probe, the old one's answer changes nothing).
_CLOSE = (
    _COMMON
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'probe')
if h[1] ~= 'half_open' or h[2] ~= ARGV[2] then return unchanged() end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'probe', 'probe_until', 'opened_at', 'retry_at')
return announce('closed', now)
"""
)


@dataclass(frozen=True)
class BreakerReply:
    """A route's state after a script: whether the script changed it, and when the next probe may be claimed."""

    changed: bool
    state: str  # closed, open, half_open
    gen: int  # 0: the route has no record
    wait_ms: int


@dataclass(frozen=True)
class BreakerChange:
    """An announced transition (what `BreakerReply` says, for another process)."""

    route: str
    state: str
    gen: int
    wait_ms: int


@dataclass(frozen=True)
class BreakerRecord:
    """A route's whole record, as the admin view and the metrics read it; times in epoch milliseconds."""

    route: str
    state: str
    gen: int
    wait_ms: int  # until the next probe may be claimed (0 when closed or due)
    failures: int  # in the window ending now
    opened_at_ms: int | None
    retry_at_ms: int | None  # open: end of the open period; half_open: end of the probe's lease
    reason: str | None
    failed_at_ms: int | None


@dataclass(frozen=True)
class BreakerPolicy:
    """When breakers open and for how long: `failures` within `window_ms` open one for `open_ms`; a probe may
    hold its claim for `probe_ms`."""

    failures: int
    window_ms: int
    open_ms: int
    probe_ms: int

    @classmethod
    def from_seconds(cls, failures: int, window: float, open_for: float, probe: float) -> BreakerPolicy:
        return cls(failures, round(window * 1000), round(open_for * 1000), round(probe * 1000))


class BreakerStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._fail = redis.register_script(_FAIL)
        self._claim = redis.register_script(_CLAIM)
        self._close = redis.register_script(_CLOSE)

    async def fail(self, route: str, member: str, reason: str, claim: str, policy: BreakerPolicy) -> BreakerReply:
        """Count a failure of `route` (`claim`: the probe's, or ''); `member` is unique to this failure."""
        args: list[str | int] = [route, member, reason, claim, policy.failures, policy.window_ms, policy.open_ms]
        with mapped_errors(self._redis):
            reply = await self._fail(keys=_keys(route), args=args)
            if int(reply[4]) or int(reply[0]):
                # Also on a transition, in case the process that created the record died before listing it.
                await self._redis.sadd(_ROUTES, route)
        return _reply(reply)

    async def claim(self, route: str, claim: str, lease_ms: int) -> BreakerReply:
        """Take the half-open probe of `route` as `claim` if it is free; `changed` tells whether it was granted."""
        with mapped_errors(self._redis):
            return _reply(await self._claim(keys=_keys(route)[:1], args=[route, claim, lease_ms]))

    async def close(self, route: str, claim: str) -> BreakerReply:
        """Close `route` after its probe `claim` succeeded, unless another probe has taken over since."""
        with mapped_errors(self._redis):
            return _reply(await self._close(keys=_keys(route), args=[route, claim]))

    async def records(self, window_ms: int) -> list[BreakerRecord]:
        """Every listed route's record, by route, with its failures in the last `window_ms`."""
        with mapped_errors(self._redis):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.smembers(_ROUTES)
                now, members = await pipe.execute()
            now_ms, routes = int(now[0]) * 1000 + int(now[1]) // 1000, sorted(members)
            async with self._redis.pipeline(transaction=False) as pipe:
                for route in routes:
                    hash_key, window_key = _keys(route)
                    pipe.hmget(hash_key, _FIELDS)
                    pipe.zcount(window_key, f"({now_ms - window_ms}", "+inf")
                replies = await pipe.execute()
        return [_record(route, now_ms, replies[2 * i], int(replies[2 * i + 1])) for i, route in enumerate(routes)]

    async def changes(self) -> AsyncIterator[str]:
        """Announced transitions (see `change_of`); first an empty string once subscribed."""
        async for message in messages(self._redis, channel=CHANGES_CHANNEL):
            yield "" if message is None else message[1]


def change_of(announcement: str) -> BreakerChange:
    """The transition an announcement on the changes channel describes."""
    state, gen, wait_ms, route = announcement.split(" ", 3)
    return BreakerChange(route, state, int(gen), max(int(wait_ms), 0))


def _keys(route: str) -> list[str]:
    base = f"gw:breaker:{{{route}}}"
    return [base, f"{base}:failures"]


def _reply(reply: Sequence[Any]) -> BreakerReply:
    return BreakerReply(bool(int(reply[0])), str(reply[1]), int(reply[2]), max(int(reply[3]), 0))


def _record(route: str, now_ms: int, fields: list[Any], failures: int) -> BreakerRecord:
    state, gen, opened_at, retry_at, probe_until, reason, failed_at = fields
    state = state or "closed"
    due = {"open": retry_at, "half_open": probe_until}.get(state)
    return BreakerRecord(
        route=route,
        state=state,
        gen=int(gen or 0),
        wait_ms=max(int(due) - now_ms, 0) if due else 0,
        failures=failures,
        opened_at_ms=int(opened_at) if opened_at else None,
        retry_at_ms=int(due) if due else None,
        reason=reason,
        failed_at_ms=int(failed_at) if failed_at else None,
    )
