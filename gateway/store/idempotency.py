"""Idempotency keys: a tenant's claim on one create, the fingerprint of its request and the prediction it made.

A key lives at `gw:idem:{<tenant>}:<sha256 of the key>` (the tenant's hash slot), a hash of `fingerprint`, `owner`
(the claim's random token) and, once the create has written its record, `prediction`. A claim without a
prediction lapses after its lease, so that a process killed mid-create does not hold the key for good.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from gateway.store.redis import mapped_errors

# KEYS[1] the key; ARGV: fingerprint, owner token, lease ms, prediction id to take over from ("" = none).
# Claims a free key (or one still naming the prediction to take over from) and returns false; else returns what
# the key holds: {fingerprint, prediction id or ""}.
_CLAIM = """
local held = redis.call('HMGET', KEYS[1], 'fingerprint', 'prediction')
if held[1] and not (ARGV[4] ~= '' and held[2] == ARGV[4]) then
  return {held[1], held[2] or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
"""

# KEYS[1] the key; ARGV[1] owner token. Drops the key only if that claim still holds it.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """This process's hold on a tenant's idempotency key."""

    key: str
    owner: str


@dataclass(frozen=True)
class Held:
    """A key another request claimed first: its request's fingerprint, and its prediction once recorded."""

    fingerprint: str
    prediction_id: str


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    async def claim(
        self, tenant: str, idempotency_key: str, fingerprint: str, lease_ms: int, *, replacing: str = ""
    ) -> Claim | Held:
        """Claim the key for a create (one round trip, atomic across processes), or say who holds it.

        `replacing` names a prediction whose create is known to have died: a key naming it is claimed anew."""
        claim = Claim(_key(tenant, idempotency_key), secrets.token_hex(16))
        with mapped_errors(self._redis):
            held = await self._claim(keys=[claim.key], args=[fingerprint, claim.owner, lease_ms, replacing])
        if held is None:
            return claim
        fingerprint_held, prediction_id = (str(part) for part in held)
        return Held(fingerprint_held, prediction_id)

    @staticmethod
    def remember_on(pipe: Pipeline, claim: Claim, prediction_id: str, ttl_seconds: int) -> None:
        """Queue on `pipe` the claimed key's prediction, kept `ttl_seconds` (it rides with the record's write)."""
        pipe.hset(claim.key, "prediction", prediction_id)
        pipe.expire(claim.key, ttl_seconds)

    async def release(self, claim: Claim) -> None:
        """Free the key of a create that failed, unless another claim has taken it since."""
        with mapped_errors(self._redis):
            await self._release(keys=[claim.key], args=[claim.owner])


def _key(tenant: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"gw:idem:{{{tenant}}}:{digest}"
