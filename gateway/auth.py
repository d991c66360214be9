"""Bearer/Token authentication with an in-process key cache invalidated over Redis pub/sub.

A cached record lives at most `cache_seconds` (≤ 5 s); a change published by any process evicts it at
once. If the subscription drops, the cache is cleared and the TTL alone bounds staleness until it is back.
"""

from __future__ import annotations

import logging
import time

from gateway.errors import Forbidden, Unauthenticated
from gateway.keys import KeyRecord, Scope, parse_token
from gateway.store import KeyStore, follow

logger = logging.getLogger(__name__)
_SCHEMES = ("bearer", "token")
_MAX_CACHED = 100_000


class Authenticator:
    def __init__(self, store: KeyStore, cache_seconds: float) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[KeyRecord | None, float]] = {}

    async def authenticate(self, authorization: str | None, scope: Scope) -> KeyRecord:
        """The key behind an `Authorization` header value, checked for validity and `scope`."""
        token = parse_token(_credentials(authorization))
        if token is None:
            raise Unauthenticated()
        record = await self._record(token.key_id)
        now = time.time()
        if record is None or not record.matches(token.secret, now):
            raise Unauthenticated()
        if record.disabled:
            raise Unauthenticated("This API key has been disabled")
        if record.expired(now):
            raise Unauthenticated("This API key has expired")
        if scope not in record.scopes:
            raise Forbidden(f"This API key lacks the '{scope}' scope")
        return record

    async def active(self, key_id: str) -> bool:
        """Whether the key still exists and works (for what it created: output links)."""
        record = await self._record(key_id)
        return record is not None and not record.disabled and not record.expired(time.time())

    async def watch(self) -> None:
        """Evict changed keys as their notifications arrive; runs until cancelled."""
        await follow("key change", self._store.changes, self._evict, self._cache.clear)

    def _evict(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    async def _record(self, key_id: str) -> KeyRecord | None:
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        raw = await self._store.get(key_id)
        record = None if raw is None else KeyRecord.model_validate(raw)
        if len(self._cache) >= _MAX_CACHED:  # unknown key ids are cached too; keep guessing from growing memory
            self._cache.clear()
        self._cache[key_id] = (record, time.monotonic())
        return record


def _credentials(authorization: str | None) -> str:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() in _SCHEMES else ""
