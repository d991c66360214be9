"""Prediction records and the per-tenant index; transitions go through one compare-and-set Lua script."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from gateway.status import Status, allowed_sources
from gateway.store import events, scripts, timeline
from gateway.store.redis import mapped_errors
from gateway.store.schedule import Schedule
from gateway.store.timeline import IndexEntry

PREDICTION, TRAINING = "prediction", "training"  # the kinds of record: a training runs like a prediction
PROVISIONAL_SECONDS = 300  # how long a record lives before its prediction was taken upstream

# KEYS[1] prediction; ARGV: new status, doc, refreshed_at, upstream_id ("" = keep), upstream outputs ("" = keep),
# event channel, retention seconds, upstream stream URL ("" = keep), allowed source statuses... Returns 1 when
# applied (and announced on the channel), 0 when the transition is not allowed, -1 when the record does not exist.
_APPLY = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
for i = 9, #ARGV do
  if ARGV[i] == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], 'doc', ARGV[2], 'refreshed_at', ARGV[3])
    if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'upstream_id', ARGV[4]) end
    if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'upstream_outputs', ARGV[5]) end
    if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'upstream_stream', ARGV[8]) end
    redis.call('EXPIRE', KEYS[1], ARGV[7])
    redis.call('HDEL', KEYS[1], 'provisional')
    redis.call('PUBLISH', ARGV[6], ARGV[1])
    return 1
  end
end
return 0
"""

# KEYS[1] prediction; ARGV: provider, route. Returns 1 when moved to that route.
_REROUTE = """
local upstream = redis.call('HGET', KEYS[1], 'upstream_id')
if upstream == false or upstream ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'provider', ARGV[1], 'route', ARGV[2])
return 1
"""


@dataclass(frozen=True)
class StoredPrediction:
    """One prediction as kept in Redis: the public document plus routing and ownership."""

    id: str
    tenant: str
    key_id: str
    provider: str
    upstream_id: str
    status: Status
    doc: dict[str, Any]
    created_ms: int
    refreshed_at: float
    upstream_outputs: tuple[str, ...] = ()  # output file URLs on the upstream, behind the gateway's links
    provisional: bool = False  # written by a create that has not handed the prediction on yet: not shown
    streams: bool = False  # the model streams its output: the prediction has a stream URL
    upstream_stream: str = ""  # the upstream's own event stream of the prediction, when it has one
    route: str = ""  # the label of the route that serves it (`Route.label`)
    kind: str = PREDICTION  # PREDICTION or TRAINING: each kind has its own tenant index (and list)

    @property
    def entry(self) -> IndexEntry:
        return IndexEntry(self.id, self.created_ms)

    def to_fields(self) -> dict[FieldT, EncodableT]:
        return {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "provider": self.provider,
            "upstream_id": self.upstream_id,
            "status": self.status.value,
            "doc": _dumps(self.doc),
            "created_ms": str(self.created_ms),
            "refreshed_at": repr(self.refreshed_at),
            "upstream_outputs": _dumps(list(self.upstream_outputs)),
            "streams": "1" if self.streams else "0",
            "upstream_stream": self.upstream_stream,
            "route": self.route,
            "kind": self.kind,
        }

    @classmethod
    def from_fields(cls, prediction_id: str, fields: dict[str, str]) -> StoredPrediction:
        return cls(
            id=prediction_id,
            tenant=fields["tenant"],
            key_id=fields["key_id"],
            provider=fields["provider"],
            upstream_id=fields.get("upstream_id", ""),
            status=Status(fields["status"]),
            doc=_loads(fields["doc"]),
            created_ms=int(fields["created_ms"]),
            refreshed_at=float(fields["refreshed_at"]),
            upstream_outputs=tuple(_loads(fields.get("upstream_outputs", "[]"))),
            provisional=fields.get("provisional") == "1",
            streams=fields.get("streams") == "1",
            upstream_stream=fields.get("upstream_stream", ""),
            route=fields.get("route", ""),
            kind=fields.get("kind", PREDICTION),
        )


class PredictionStore:
    def __init__(self, redis: aioredis.Redis, retention_seconds: int, follow_ups: Schedule, deadlines: Schedule) -> None:
        self._redis = redis
        self._retention = retention_seconds
        self._apply = redis.register_script(_APPLY)
        self._reroute = redis.register_script(_REROUTE)
        self._follow_ups = follow_ups
        self._deadlines = deadlines

    async def insert(
        self,
        prediction: StoredPrediction,
        *,
        follow_up_ms: int,
        deadline_ms: int | None = None,
        admit: Callable[[Pipeline], Awaitable[None]] | None = None,
        remember: Callable[[Pipeline], None] | None = None,
    ) -> Any:
        """Write the record, index it for its tenant (trimming expired index entries) and schedule its first
        follow-up (and its deadline, if any): one round trip, so that no record exists that nothing follows up.

        `admit` queues a limits check first in the same round trip; its reply is returned. When it refuses, the
        caller `discard`s the record (a refused create costs two round trips, an admitted one none extra).
        `remember` queues more writes after the record's (an idempotency key naming it), also in that round trip.

        The record is provisional (`StoredPrediction.provisional`, which readers do not show) and expires within
        minutes unless a change is applied to it or it is `retain`ed: one whose create failed cannot outlive the
        failure, nor be seen as a prediction that never finishes, even when its clean-up failed too."""
        index = _index_key(prediction.tenant, prediction.kind)
        async with self._redis.pipeline(transaction=False) as pipe:
            if admit is not None:
                await admit(pipe)
            pipe.hset(_key(prediction.id), mapping={**prediction.to_fields(), "provisional": "1"})
            pipe.expire(_key(prediction.id), min(PROVISIONAL_SECONDS, self._retention))
            timeline.add(pipe, index, prediction.entry, prediction.created_ms - self._retention * 1000)
            pipe.expire(index, self._retention)
            self._follow_ups.add_to(pipe, prediction.id, follow_up_ms)
            if deadline_ms is not None:
                self._deadlines.add_to(pipe, prediction.id, deadline_ms)
            if remember is not None:
                remember(pipe)
            with mapped_errors(self._redis):
                replies = await scripts.execute(pipe)
        return replies[0] if admit is not None else None

    async def reroute(self, prediction_id: str, provider: str, route: str) -> bool:
        """Hand a prediction that no upstream has taken to another route; False once one has (it has an
        upstream id) or the record has gone."""
        with mapped_errors(self._redis):
            return bool(await self._reroute(keys=[_key(prediction_id)], args=[provider, route]))

    async def retain(self, prediction_id: str) -> None:
        """Keep a provisional record for the retention period (a prediction queued to run later)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.expire(_key(prediction_id), self._retention)
            pipe.hdel(_key(prediction_id), "provisional")
            with mapped_errors(self._redis):
                await pipe.execute()

    async def get(self, prediction_id: str) -> StoredPrediction | None:
        with mapped_errors(self._redis):
            fields = await self._redis.hgetall(_key(prediction_id))
        return StoredPrediction.from_fields(prediction_id, _strings(fields)) if fields else None

    async def get_counted(
        self, prediction_id: str, count: Callable[[Pipeline], Awaitable[None]]
    ) -> tuple[Any, StoredPrediction | None]:
        """`get` in the same round trip as a count queued before it (a read rate's): the count's reply and the
        record."""
        async with self._redis.pipeline(transaction=False) as pipe:
            await count(pipe)
            pipe.hgetall(_key(prediction_id))
            with mapped_errors(self._redis):
                reply, fields = await scripts.execute(pipe)
        return reply, StoredPrediction.from_fields(prediction_id, _strings(fields)) if fields else None

    async def apply(
        self,
        prediction_id: str,
        status: Status,
        doc: dict[str, Any],
        refreshed_at: float,
        upstream_id: str = "",
        upstream_outputs: Sequence[str] | None = None,
        upstream_stream: str = "",
    ) -> bool:
        """Compare-and-set: store `doc` only if `status` may follow the current status. True when applied."""
        outputs = "" if upstream_outputs is None else _dumps(list(upstream_outputs))
        channel = events.channel(prediction_id)
        args = [
            status.value,
            _dumps(doc),
            repr(refreshed_at),
            upstream_id,
            outputs,
            channel,
            self._retention,
            upstream_stream,
            *(s.value for s in allowed_sources(status)),
        ]
        with mapped_errors(self._redis):
            return int(await self._apply(keys=[_key(prediction_id)], args=args)) == 1

    async def claim_refresh(self, prediction_id: str, hold_ms: int) -> bool:
        """Whether this process may re-read the prediction upstream now (no other process is doing it).
        The claim lapses after `hold_ms` should its holder never release it."""
        with mapped_errors(self._redis):
            return bool(await self._redis.set(_refreshing_key(prediction_id), 1, nx=True, px=hold_ms))

    async def release_refresh(self, prediction_id: str) -> None:
        with mapped_errors(self._redis):
            await self._redis.delete(_refreshing_key(prediction_id))

    async def delete(self, prediction: StoredPrediction) -> None:
        """Remove the record of a create that did not go through, with its index entry and schedules."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_key(prediction.id))
            pipe.zrem(_index_key(prediction.tenant, prediction.kind), timeline.member(prediction.entry))
            pipe.zrem(self._follow_ups.key, prediction.id)
            pipe.zrem(self._deadlines.key, prediction.id)
            with mapped_errors(self._redis):
                await pipe.execute()

    async def older(
        self,
        tenant: str,
        edge: IndexEntry | None,
        count: int,
        *,
        before_ms: int | None = None,
        after_ms: int | None = None,
        kind: str = PREDICTION,
    ) -> list[IndexEntry]:
        """Up to `count` of the tenant's records of `kind` older than `edge`, within the bounds; newest first."""
        index = _index_key(tenant, kind)
        return await timeline.older(self._redis, index, edge, count, before_ms=before_ms, after_ms=after_ms)

    async def newer(
        self, tenant: str, edge: IndexEntry, count: int, *, before_ms: int | None = None, kind: str = PREDICTION
    ) -> list[IndexEntry]:
        """Up to `count` of the tenant's records of `kind` newer than `edge`, created before `before_ms`; oldest first."""
        return await timeline.newer(self._redis, _index_key(tenant, kind), edge, count, before_ms=before_ms)

    async def sizes(self, entries: Sequence[IndexEntry]) -> list[int]:
        """The size in bytes of each entry's public document (0 when it has expired)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hstrlen(_key(entry.id), "doc")
            with mapped_errors(self._redis):
                return [int(size) for size in await pipe.execute()]

    async def load(self, entries: Sequence[IndexEntry]) -> list[StoredPrediction]:
        """The records behind index entries, in order, skipping those that have expired."""
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hgetall(_key(entry.id))
            with mapped_errors(self._redis):
                rows = await pipe.execute()
        return [StoredPrediction.from_fields(e.id, _strings(f)) for e, f in zip(entries, rows, strict=True) if f]


def _key(prediction_id: str) -> str:
    return f"gw:pred:{{{prediction_id}}}"


def record_key(prediction_id: str) -> str:
    """The key of a prediction's record, for keys that must share its hash slot."""
    return _key(prediction_id)


def _refreshing_key(prediction_id: str) -> str:
    return f"{_key(prediction_id)}:refreshing"


def _index_key(tenant: str, kind: str) -> str:
    return f"gw:tenant:{{{tenant}}}:{kind}s"


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, which an upstream's JSON may hold
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, which the standard library writes (older records)
        return json.loads(text)


def _strings(fields: Mapping[Any, Any]) -> dict[str, str]:
    """A hash as read with decoded replies (redis-py types them as bytes or str)."""
    return {str(name): str(value) for name, value in fields.items()}
