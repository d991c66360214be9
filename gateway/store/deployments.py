"""A tenant's own deployments: one record per deployment and the tenant's index of them, all in its hash slot.

`gw:tenant:{<tenant>}:deployment:<name>` holds a deployment's current release as JSON;
`gw:tenant:{<tenant>}:deployments` orders the tenant's deployments by creation (a `timeline`, the names as ids).
Sharing the tenant's hash tag lets one script write a record with its index entry, also on a Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from gateway.store import timeline
from gateway.store.redis import mapped_errors
from gateway.store.timeline import IndexEntry

# KEYS[1] the record, KEYS[2] the index; ARGV: the record's JSON, its index member. 1 if written, 0 if taken.
_INSERT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""

# KEYS[1] the record; ARGV: the release number and release time it must still hold, the new JSON. 1 if replaced,
# 0 if it changed. The time tells a deployment deleted and made again (release 1 once more) from the one read.
_REPLACE = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local held = cjson.decode(raw)
if held['number'] ~= tonumber(ARGV[1]) or held['released_ms'] ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class StoredDeployment:
    """A tenant's deployment as its current release (`number`, from 1) describes it."""

    tenant: str
    name: str
    model: str
    version: str
    hardware: str
    min_instances: int
    max_instances: int
    number: int
    created_ms: int  # the deployment's creation: its place in the index
    released_ms: int  # the current release's creation
    input_defaults: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> StoredDeployment:
        return cls(**json.loads(raw))


class DeploymentStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._insert = redis.register_script(_INSERT)
        self._replace = redis.register_script(_REPLACE)

    async def insert(self, deployment: StoredDeployment) -> bool:
        """Record a new deployment and index it; False (and nothing written) if the tenant has one by that name."""
        entry = IndexEntry(deployment.name, deployment.created_ms)
        keys = [_key(deployment.tenant, deployment.name), _index_key(deployment.tenant)]
        with mapped_errors(self._redis):
            return bool(await self._insert(keys=keys, args=[deployment.to_json(), timeline.member(entry)]))

    async def get(self, tenant: str, name: str) -> StoredDeployment | None:
        with mapped_errors(self._redis):
            raw = await self._redis.get(_key(tenant, name))
        return None if raw is None else StoredDeployment.from_json(str(raw))

    async def replace(self, current: StoredDeployment, updated: StoredDeployment) -> bool:
        """Write `updated` over `current` unless another release, or a delete (and a new deployment by that name),
        came first: then False."""
        with mapped_errors(self._redis):
            args: list[int | str] = [current.number, current.released_ms, updated.to_json()]
            done = await self._replace(keys=[_key(current.tenant, current.name)], args=args)
        return bool(done)

    async def delete(self, deployment: StoredDeployment) -> bool:
        """Remove the record and its index entry; False if it was already gone."""
        async with self._redis.pipeline(transaction=True) as pipe:  # one slot: MULTI is allowed on a cluster too
            pipe.delete(_key(deployment.tenant, deployment.name))
            pipe.zrem(_index_key(deployment.tenant), timeline.member(IndexEntry(deployment.name, deployment.created_ms)))
            with mapped_errors(self._redis):
                deleted, _ = await pipe.execute()
        return bool(deleted)

    async def older(self, tenant: str, edge: IndexEntry | None, count: int) -> list[IndexEntry]:
        """Up to `count` index entries older than `edge` (or the newest), newest first."""
        return await timeline.older(self._redis, _index_key(tenant), edge, count)

    async def newer(self, tenant: str, edge: IndexEntry, count: int) -> list[IndexEntry]:
        """Up to `count` index entries newer than `edge`, oldest first."""
        return await timeline.newer(self._redis, _index_key(tenant), edge, count)

    async def load(self, tenant: str, entries: Sequence[IndexEntry]) -> list[StoredDeployment]:
        """The records behind index entries, in order, skipping any deleted meanwhile (one MGET: one slot)."""
        if not entries:
            return []
        with mapped_errors(self._redis):
            rows = await self._redis.mget([_key(tenant, entry.id) for entry in entries])
        return [StoredDeployment.from_json(str(raw)) for raw in rows if raw is not None]


def _key(tenant: str, name: str) -> str:
    return f"gw:tenant:{{{tenant}}}:deployment:{name}"


def _index_key(tenant: str) -> str:
    return f"gw:tenant:{{{tenant}}}:deployments"
