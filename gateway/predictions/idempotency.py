"""Creates made at most once per `Idempotency-Key`: the claim, the replay, and the release of a failed create.

A key is remembered per tenant with the fingerprint of its request. The claim is one atomic Redis script, taken
before anything else of the create runs (limits and pre-charge included), so that across every gateway process
one request per key gets to create. The created prediction's id is written with its record, in the same round
trip; until then the claim is a lease that lapses after `LEASE_SECONDS`.

A create that fails releases its key, whatever the status (where Stripe would keep a 4xx and answer it again): a
failed request made no prediction, so its retry may. A process killed mid-create leaves either a lapsing lease (it died before
its record was written) or a key naming a provisional record that is never handed on. The latter record, once
older than the lease or expired, is taken to be dead: the next request with the key creates anew (the dead
record expires on its own, as any create's whose process died does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio.client import Pipeline

from gateway.catalog import Reference
from gateway.errors import Conflict, KeyReused
from gateway.keys import KeyRecord
from gateway.predictions.records import CreateOptions
from gateway.predictions.service import Predictions
from gateway.store import Claim, IdempotencyStore, StoredPrediction

LEASE_SECONDS = 60  # longer than any create takes: an upstream call times out well before
REMEMBER_SECONDS = 24 * 3600
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class IdempotencyKey:
    """A create's `Idempotency-Key` and the fingerprint of its request (method, route and canonical body)."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Created:
    """The prediction a create made, and whether it was made by an earlier request with the same key."""

    record: StoredPrediction
    replayed: bool = False


class IdempotentCreates:
    """`Predictions.create` once per tenant and idempotency key; a repeat gets the prediction the first made."""

    def __init__(self, predictions: Predictions, store: IdempotencyStore, retention_seconds: int) -> None:
        self._predictions = predictions
        self._store = store
        self._remember_seconds = min(REMEMBER_SECONDS, retention_seconds)  # never outlive the prediction it names

    async def create(
        self, key: KeyRecord, reference: Reference, options: CreateOptions, idempotency: IdempotencyKey | None
    ) -> Created:
        """A new prediction; with a key, the one an earlier request with that key and request made.

        Raises KeyReused for the key sent with another request, Conflict while the first is still in progress."""
        if idempotency is None:
            return Created(await self._predictions.create(key, reference, options))
        claimed = await self._claim(key, idempotency)
        if isinstance(claimed, StoredPrediction):
            return Created(claimed, replayed=True)
        try:
            record = await self._predictions.create(key, reference, options, self._remembering(claimed))
        except Exception:
            await self._store.release(claimed)
            raise
        return Created(record)

    async def _claim(self, key: KeyRecord, idempotency: IdempotencyKey) -> Claim | StoredPrediction:
        """The key claimed for this request, or the prediction it already made."""
        held = await self._store.claim(key.tenant, idempotency.key, idempotency.fingerprint, LEASE_SECONDS * 1000)
        if isinstance(held, Claim):
            return held
        if held.fingerprint != idempotency.fingerprint:
            raise KeyReused()
        record = await self._predictions.find(held.prediction_id) if held.prediction_id else None
        if record is not None and not record.provisional:  # the key's hash slot is its tenant's: so is the record
            return record
        if held.prediction_id and (record is None or _lease_over(record)):
            retaken = await self._store.claim(
                key.tenant, idempotency.key, idempotency.fingerprint, LEASE_SECONDS * 1000, replacing=held.prediction_id
            )
            if isinstance(retaken, Claim):
                return retaken
        raise Conflict(
            "A request with this Idempotency-Key is still in progress; try again shortly",
            retry_after=RETRY_AFTER_SECONDS,
        )

    def _remembering(self, claim: Claim) -> Callable[[Pipeline, str], None]:
        def remember(pipe: Pipeline, prediction_id: str) -> None:
            IdempotencyStore.remember_on(pipe, claim, prediction_id, self._remember_seconds)

        return remember


def _lease_over(record: StoredPrediction) -> bool:
    """Whether the create that wrote this provisional record has had longer than any create takes."""
    return time.time() * 1000 - record.created_ms > LEASE_SECONDS * 1000
