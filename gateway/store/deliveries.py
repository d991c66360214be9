"""Outbound client webhooks: the durable delivery stream, the per-prediction throttle and settle flag, and
each tenant's signing secret.

Deliveries wait in one Redis stream (`gw:{deliveries}:stream`) read by one consumer group: every gateway
process is a consumer. A message stays pending, owned by the process delivering it, until it is finished
(acknowledged and deleted), however many attempts that takes; its owner renews the claim (`hold`) while it
lives, and a message whose owner stopped renewing it for a lease is taken over by another process
(`reclaim`). The throttle and the settle flag live beside the prediction's record (`gw:pred:{<id>}…`), the
secret beside the tenant's other keys (`gw:tenant:{<tenant>}:webhook-secret`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gateway.store.depths import DeliveryDepth
from gateway.store.predictions import record_key
from gateway.store.redis import mapped_errors

STREAM = "gw:{deliveries}:stream"
GROUP = "senders"
_PEL_SCAN = 10_000  # the most pending messages one consumer is expected to hold
_RELEASED_IDLE_MS = 365 * 24 * 3600 * 1000  # longer than any lease: a given-up message is taken at the next look

# KEYS[1] prediction; ARGV[1] lease ms. Claims the settling of a terminal prediction's webhook: 1 when this caller
# should enqueue it; 0 when it is done, being done by another caller within its lease, or the record is gone.
_CLAIM_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local state = redis.call('HGET', KEYS[1], 'webhook_settled')
if state == 'done' then return 0 end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if state and tonumber(state) > now_ms then return 0 end
redis.call('HSET', KEYS[1], 'webhook_settled', tostring(now_ms + tonumber(ARGV[1])))
return 1
"""

# KEYS[1] prediction. Marks its terminal webhook enqueued, unless the record has gone (it is not to be recreated).
_SETTLED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'webhook_settled', 'done') end
"""

# KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] how many pending entries to scan, ARGV[4] idle ms,
# ARGV[5..] the ids the consumer holds. Sets the idle time of those still pending for this consumer (0 renews the
# claim, a long one gives it up to the next `reclaim`) and returns them; ids another consumer took over (or that
# were finished) are left alone and left out.
_HOLD = """
local held = {}
for i = 5, #ARGV do held[ARGV[i]] = true end
local mine = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])) do
  if held[entry[1]] then mine[#mine + 1] = entry[1] end
end
if #mine > 0 then
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(mine) do args[#args + 1] = id end
  args[#args + 1] = 'IDLE'
  args[#args + 1] = ARGV[4]
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return mine
"""


@dataclass(frozen=True)
class Delivery:
    """One webhook to send: the signed body is fixed when it is enqueued, and so is its `webhook_id`, which
    every attempt carries."""

    webhook_id: str
    url: str
    tenant: str
    prediction_id: str
    body: str  # compact UTF-8 JSON, sent and signed byte for byte
    terminal: bool  # only a terminal prediction's webhook is retried
    enqueued_at: float  # Unix time; retries are scheduled from it

    def to_fields(self) -> dict[str, str]:
        return {**{k: str(v) for k, v in asdict(self).items()}, "terminal": "1" if self.terminal else ""}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Delivery:
        return cls(
            webhook_id=fields["webhook_id"],
            url=fields["url"],
            tenant=fields["tenant"],
            prediction_id=fields["prediction_id"],
            body=fields["body"],
            terminal=fields["terminal"] == "1",
            enqueued_at=float(fields["enqueued_at"]),
        )


Message = tuple[str, Delivery]
"""A stream entry's id and the delivery it holds."""


class DeliveryStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._claim_settle = redis.register_script(_CLAIM_SETTLE)
        self._settled = redis.register_script(_SETTLED)
        self._hold = redis.register_script(_HOLD)

    async def throttle(self, prediction_id: str, window_ms: int) -> bool:
        """True for the first caller in each `window_ms` for this prediction, across all processes."""
        with mapped_errors(self._redis):
            return bool(await self._redis.set(f"{record_key(prediction_id)}:webhook-throttle", 1, nx=True, px=window_ms))

    async def claim_settle(self, prediction_id: str, lease_ms: int) -> bool:
        """Whether this caller should enqueue the prediction's terminal webhook (see `_CLAIM_SETTLE`); a claim
        not confirmed by `settled` within `lease_ms` lapses, so a caller that died between the two is replaced."""
        with mapped_errors(self._redis):
            return int(await self._claim_settle(keys=[record_key(prediction_id)], args=[lease_ms])) == 1

    async def settled(self, prediction_id: str) -> None:
        """Record that the prediction's terminal webhook is in the stream."""
        with mapped_errors(self._redis):
            await self._settled(keys=[record_key(prediction_id)])

    async def enqueue(self, delivery: Delivery) -> None:
        with mapped_errors(self._redis):
            await self._redis.xadd(STREAM, delivery.to_fields())  # type: ignore[arg-type]  # str values are fine

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing enqueued before it is missed)."""
        with mapped_errors(self._redis):
            try:
                await self._redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists already: another process made it
                    raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Message]:
        """Up to `count` new messages for `consumer`, waiting up to `block_ms` for the first."""
        with mapped_errors(self._redis):
            reply: Any = await self._redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
        return [_message(entry) for _, entries in reply or [] for entry in entries if entry[1]]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int, start: str) -> tuple[str, list[Message]]:
        """Messages whose owner has not renewed them for `min_idle_ms`, now owned by `consumer`: up to `count`
        from the pending entries at and after `start`, and where the next scan starts ("0-0" after the last)."""
        with mapped_errors(self._redis):
            reply: Any = await self._redis.xautoclaim(STREAM, GROUP, consumer, min_idle_ms, start_id=start, count=count)
        return str(reply[0]), [_message(entry) for entry in reply[1] if entry and entry[1]]

    async def hold(self, consumer: str, ids: Collection[str]) -> set[str]:
        """Renew `consumer`'s claim on `ids`; the ones it still owns."""
        return await self._set_idle(consumer, ids, 0)

    async def release(self, consumer: str, ids: Collection[str]) -> set[str]:
        """Give up `consumer`'s claim on `ids` (it stops): each looks unrenewed for ever, so the next `reclaim`
        of any consumer takes it. The ones it still owned."""
        return await self._set_idle(consumer, ids, _RELEASED_IDLE_MS)

    async def _set_idle(self, consumer: str, ids: Collection[str], idle_ms: int) -> set[str]:
        if not ids:
            return set()
        with mapped_errors(self._redis):
            mine = await self._hold(keys=[STREAM], args=[GROUP, consumer, _PEL_SCAN, idle_ms, *ids])
        return {str(i) for i in mine}

    async def finish(self, message_ids: Sequence[str]) -> None:
        """Acknowledge and delete messages: delivered, or given up on."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *message_ids)
            pipe.xdel(STREAM, *message_ids)
            with mapped_errors(self._redis):
                await pipe.execute()

    async def depth(self) -> DeliveryDepth:
        """The group's pending messages and its lag. Finished messages are deleted, so when Redis cannot tell
        the lag (after deletions) it is the stream's length less the pending ones."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(STREAM)
            pipe.xinfo_groups(STREAM)
            with mapped_errors(self._redis):
                length, groups = await pipe.execute(raise_on_error=False)  # no stream yet: no groups either
        group: dict[str, Any] = next((g for g in groups if g.get("name") == GROUP), {}) if isinstance(groups, list) else {}
        pending = int(group.get("pending") or 0)
        lag = group.get("lag")
        return DeliveryDepth(pending, int(lag) if lag is not None else max(int(length) - pending, 0))

    async def tenant_secret(self, tenant: str, new_secret: str) -> str:
        """The tenant's webhook signing secret; `new_secret` becomes it if the tenant has none yet."""
        key = f"gw:tenant:{{{tenant}}}:webhook-secret"
        with mapped_errors(self._redis):
            await self._redis.set(key, new_secret, nx=True)
            return str(await self._redis.get(key))


def _message(entry: Any) -> Message:
    message_id, fields = entry
    return str(message_id), Delivery.from_fields({str(k): str(v) for k, v in fields.items()})
