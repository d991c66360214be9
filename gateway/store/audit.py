"""The audit log of admin actions: one Redis Stream (`gw:audit`), trimmed by age, read newest first.

Each entry is a flat map of strings; the fields named in `AuditFilter.fields` can be matched exactly. An entry
is appended right after the change it records: the log is one key, in a hash slot of its own, and a transaction
cannot span slots on a cluster. A process that dies between the two leaves the change without its entry.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from gateway.errors import BadRequest
from gateway.store.redis import mapped_errors

STREAM = "gw:audit"
_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_BATCH = 500  # entries read per XREVRANGE while filtering
_MAX_SCANNED = 20_000  # one page never reads more than this; a short page then still carries a cursor

AuditFields = dict[str, str]


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read: exact field matches (`tenants` matches one word of a space-separated list), a time
    window in epoch milliseconds (inclusive), and `before`, the id of the last entry of the previous page."""

    fields: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    before: str | None = None
    limit: int = 100

    def admits(self, entry: AuditFields) -> bool:
        if any(entry.get(name) != value for name, value in self.fields.items()):
            return False
        return self.tenant is None or self.tenant in entry.get("tenants", "").split()


@dataclass(frozen=True)
class AuditPage:
    """Entries newest first as `(entry id, fields)`, and the `before` of the next page (None at the end)."""

    entries: list[tuple[str, AuditFields]]
    next_before: str | None


class AuditStore:
    def __init__(self, redis: aioredis.Redis, retention_seconds: int) -> None:
        self._redis = redis
        self._retention_ms = retention_seconds * 1000

    async def append(self, entry: AuditFields) -> str:
        """Record `entry`, trimming entries older than the retention at the same time; returns its id."""
        with mapped_errors(self._redis):
            entry_id = await self._redis.xadd(STREAM, entry, minid=self._oldest_kept_ms(), approximate=False)  # type: ignore[arg-type]
        return str(entry_id)

    async def page(self, query: AuditFilter) -> AuditPage:
        """The newest `query.limit` entries `query` admits, read backwards in batches."""
        if query.before is not None and not _ENTRY_ID.match(query.before):
            raise BadRequest("The cursor is not valid; use the next URL as given")
        upper = f"({query.before}" if query.before else ("+" if query.until_ms is None else str(query.until_ms))
        lower = str(max(query.since_ms or 0, self._oldest_kept_ms()))
        found: list[tuple[str, AuditFields]] = []
        scanned = 0
        while scanned < _MAX_SCANNED:
            batch = await self._read(upper, lower)
            for entry_id, entry in batch:
                scanned += 1
                if query.admits(entry):
                    found.append((entry_id, entry))
                if len(found) > query.limit:
                    return AuditPage(found[: query.limit], found[query.limit - 1][0])
            if len(batch) < _BATCH:
                return AuditPage(found, None)
            upper = f"({batch[-1][0]}"
        return AuditPage(found, upper[1:])

    async def _read(self, upper: str, lower: str) -> list[tuple[str, AuditFields]]:
        with mapped_errors(self._redis):
            rows = await self._redis.xrevrange(STREAM, max=upper, min=lower, count=_BATCH)
        return [(str(entry_id), {str(k): str(v) for k, v in (entry or {}).items()}) for entry_id, entry in rows or []]

    def _oldest_kept_ms(self) -> int:
        return int(time.time() * 1000) - self._retention_ms
