"""All Redis access: the key layout, pipelines, Lua scripts, subscriptions and the embedded server.
No other module talks to Redis.

Keys that belong together share a Redis Cluster hash tag: `gw:pred:{<id>}` holds one prediction,
`gw:tenant:{<tenant>}:predictions` indexes a tenant's predictions by creation time; `gw:file:{<id>}` and
`gw:tenant:{<tenant>}:files` do the same for uploaded files; a tenant's deployments and their index are
`gw:tenant:{<tenant>}:deployment:<name>` and `gw:tenant:{<tenant>}:deployments`; client webhooks wait in `gw:{deliveries}:stream`.
A provider's credential cooling (`gw:creds:{<provider>}:…`) is shared by every process.
A tenant's idempotency keys (`gw:idem:{<tenant>}:…`) are in its slot too.
A route's circuit breaker (`gw:breaker:{<route>}…`) is in the route's slot.
A tenant's limits (`gw:limits:{<tenant>}…`) and usage (`gw:usage:{<tenant>}…`) share its slot, so that one
script checks or settles them together. A slot queue's keys share `gw:queue:{<name>}`.

The URL may name one server, a cluster or a Sentinel-managed primary (`redis.connect`). What a cluster asks of
every store: a transaction or a script touches one hash slot, and a script only the keys passed in KEYS
(`tests/store/test_script_keys.py` watches that); nothing SCANs or lists keys by pattern; PUBLISH goes on its
own, not inside a pipeline. Writes that span slots go in order: a key's index entry before its record (readers
skip entries without one), an audit entry after the change it records (a crash between leaves it unrecorded).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Collection

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gateway.store import events
from gateway.store.audit import AuditFields, AuditFilter, AuditPage, AuditStore
from gateway.store.breakers import BreakerPolicy, BreakerRecord, BreakerReply, BreakerStore
from gateway.store.credentials import Cooled, CredentialCounts, CredentialStore
from gateway.store.deliveries import Delivery, DeliveryStore, Message
from gateway.store.deployments import DeploymentStore, StoredDeployment
from gateway.store.depths import DeliveryDepth, QueueDepths, ScheduleDepth, SlotQueueDepth
from gateway.store.files import FileStore, StoredFile
from gateway.store.idempotency import Claim, Held, IdempotencyStore
from gateway.store.keys import KeyChange, KeyStore, StoredKey
from gateway.store.limits import SPENT_TTL_SECONDS, LimitStore, Periods, Read, Refusal, ScopeLimits, ScopeState
from gateway.store.predictions import PREDICTION, TRAINING, PredictionStore, StoredPrediction
from gateway.store.queue import QueueStore
from gateway.store.redis import ErrorObserver, connect, mapped_errors
from gateway.store.schedule import Schedule
from gateway.store.schemas import SchemaStore
from gateway.store.subscriptions import follow
from gateway.store.timeline import IndexEntry
from gateway.store.usage import HourCounters, Retention, Settlement, UsageStore


class Store:
    """Every store of the gateway over one pooled Redis client."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prediction_retention_seconds: int,
        audit_retention_seconds: int,
        usage_retention: Retention | None = None,
    ) -> None:
        self._redis = redis
        self.follow_ups = Schedule(redis, "follow-ups")  # every unfinished prediction: polling, settlement
        self.deadlines = Schedule(redis, "deadlines")  # predictions with a Cancel-After deadline
        self.predictions = PredictionStore(redis, prediction_retention_seconds, self.follow_ups, self.deadlines)
        self.idempotency = IdempotencyStore(redis)
        self.audit = AuditStore(redis, audit_retention_seconds)
        self.keys = KeyStore(redis, self.audit)
        self.files = FileStore(redis)
        self.deployments = DeploymentStore(redis)
        self.schemas = SchemaStore(redis)
        self.deliveries = DeliveryStore(redis)
        self.limits = LimitStore(redis, self.audit)
        self.breakers = BreakerStore(redis)
        self.usage = UsageStore(redis, usage_retention or default_retention(prediction_retention_seconds))
        self.credentials = CredentialStore(redis)

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        prediction_retention_seconds: int,
        audit_retention_seconds: int,
        usage_retention: Retention | None = None,
        on_error: ErrorObserver | None = None,
    ) -> Store:
        """A store over a new pooled client; `on_error` is told the kind of each Redis error it maps."""
        return cls(connect(url, on_error), prediction_retention_seconds, audit_retention_seconds, usage_retention)

    def queue(self, name: str) -> QueueStore:
        """The slot queue `name` as a new consumer (one per dispatcher) sees it."""
        return QueueStore(self._redis, name)

    async def shared_secret(self, name: str) -> bytes:
        """A secret every gateway process shares, created once by whichever process asks first."""
        key = f"gw:secret:{{{name}}}"
        with mapped_errors(self._redis):
            await self._redis.set(key, secrets.token_hex(32), nx=True)
            value = await self._redis.get(key)
        return str(value).encode()

    async def ping(self, timeout: float) -> None:
        """Return once Redis answers a PING; StoreError if it does not within `timeout` seconds."""
        with mapped_errors(self._redis):
            try:
                await asyncio.wait_for(self._ping(), timeout)
            except TimeoutError as exc:
                raise redis_errors.TimeoutError("no answer to PING") from exc

    async def _ping(self) -> None:
        try:
            await self._redis.ping()
        except redis_errors.ConnectionError:
            await self._redis.ping()  # a pooled connection to a server that restarted fails once, then reconnects

    async def depths(self, slot_queues: Collection[str], now_ms: int | None = None) -> QueueDepths:
        """How much work waits in the schedules, the webhook stream and the named slot queues (read concurrently)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        names = list(slot_queues)
        fixed = asyncio.gather(self.follow_ups.depth(now_ms), self.deadlines.depth(now_ms), self.deliveries.depth())
        queues = asyncio.gather(*(QueueStore(self._redis, name).depth() for name in names))
        (follow_ups, deadlines, deliveries), slots = await asyncio.gather(fixed, queues)
        return QueueDepths(follow_ups, deadlines, deliveries, dict(zip(names, slots, strict=True)))

    def prediction_changes(self) -> AsyncIterator[str]:
        """Ids of predictions as any process changes them; first an empty string once subscribed."""
        return events.changes(self._redis)

    async def aclose(self) -> None:
        await self._redis.aclose()


def default_retention(
    prediction_retention_seconds: int,
    aggregate_seconds: int = 400 * 24 * 3600,
    row_seconds: int = 90 * 24 * 3600,
) -> Retention:
    """Usage retention: a settled id is remembered a day longer than any record that could settle it again."""
    return Retention(
        settled_seconds=prediction_retention_seconds + 24 * 3600,
        aggregate_seconds=aggregate_seconds,
        row_seconds=row_seconds,
        spent_day_seconds=SPENT_TTL_SECONDS["d"],
        spent_month_seconds=SPENT_TTL_SECONDS["m"],
    )


__all__ = [
    "PREDICTION",
    "TRAINING",
    "AuditFields",
    "AuditFilter",
    "AuditPage",
    "AuditStore",
    "BreakerPolicy",
    "BreakerRecord",
    "BreakerReply",
    "BreakerStore",
    "Claim",
    "Cooled",
    "CredentialCounts",
    "CredentialStore",
    "Delivery",
    "DeliveryDepth",
    "DeliveryStore",
    "DeploymentStore",
    "ErrorObserver",
    "FileStore",
    "Held",
    "HourCounters",
    "IdempotencyStore",
    "IndexEntry",
    "KeyChange",
    "KeyStore",
    "LimitStore",
    "Message",
    "Periods",
    "PredictionStore",
    "QueueDepths",
    "QueueStore",
    "Read",
    "Refusal",
    "Retention",
    "Schedule",
    "ScheduleDepth",
    "SchemaStore",
    "ScopeLimits",
    "ScopeState",
    "Settlement",
    "SlotQueueDepth",
    "Store",
    "StoredDeployment",
    "StoredFile",
    "StoredKey",
    "StoredPrediction",
    "UsageStore",
    "default_retention",
    "follow",
]
