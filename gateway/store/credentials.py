"""Upstream credentials cooling down after a 429, shared by every gateway process.

Per provider, `gw:creds:{<provider>}:cooling` maps a credential's fingerprint to the epoch millisecond its cooling
ends, and `gw:creds:{<provider>}:limited` counts the 429s each credential met. Every cooling is announced on
`gw:creds:cooled`, so that each process stops using the credential at once. Only fingerprints are kept here,
never a token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.store.redis import mapped_errors, messages

CHANNEL = "gw:creds:cooled"

# Cooling only ever lengthens: two processes meeting 429s at once keep the later end, whichever writes last.
_COOL = """
local until_ms = ARGV[2]
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) >= tonumber(until_ms) then until_ms = current
else redis.call('HSET', KEYS[1], ARGV[1], until_ms) end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PUBLISH', ARGV[4], cjson.encode({provider = ARGV[3], credential = ARGV[1], until_ms = until_ms}))
return until_ms
"""


@dataclass(frozen=True)
class Cooled:
    """A credential of `provider` that cools until `until_ms` (epoch milliseconds)."""

    provider: str
    credential: str
    until_ms: int

    @classmethod
    def parse(cls, message: str) -> Cooled | None:
        """The announcement as published; None for anything else on the channel."""
        try:
            data = json.loads(message)
            return cls(str(data["provider"]), str(data["credential"]), int(data["until_ms"]))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class CredentialCounts:
    """What the store knows of one provider's credentials, by fingerprint."""

    cooling_until_ms: dict[str, int]  # ends already past are kept: readers compare with their clock
    rate_limited: dict[str, int]


class CredentialStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._cool = redis.register_script(_COOL)

    async def cool(self, provider: str, credential: str, until_ms: int) -> int:
        """Count a 429 of `credential` and make it cool until `until_ms` at least; the end now stored."""
        keys = [_key(provider, "cooling"), _key(provider, "limited")]
        with mapped_errors(self._redis):
            return int(await self._cool(keys=keys, args=[credential, until_ms, provider, CHANNEL]))

    async def counts(self, providers: Sequence[str]) -> dict[str, CredentialCounts]:
        """Cooling ends and 429 counts of each provider's credentials, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for provider in providers:
                pipe.hgetall(_key(provider, "cooling"))
                pipe.hgetall(_key(provider, "limited"))
            with mapped_errors(self._redis):
                replies = await pipe.execute()
        return {
            provider: CredentialCounts(_ints(replies[2 * i]), _ints(replies[2 * i + 1])) for i, provider in enumerate(providers)
        }

    async def changes(self) -> AsyncIterator[str]:
        """Announcements (see `Cooled.parse`); first an empty string once subscribed. StoreError when the link drops."""
        async for message in messages(self._redis, channel=CHANNEL):
            yield "" if message is None else message[1]


def _key(provider: str, what: str) -> str:
    return f"gw:creds:{{{provider}}}:{what}"


def _ints(raw: dict[str, str]) -> dict[str, int]:
    return {name: int(value) for name, value in raw.items()}
