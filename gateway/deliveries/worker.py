"""Sending client webhooks from the durable stream: signed, through the address guard, retried when terminal.

Each gateway process runs one worker, a consumer of the stream's group. A message is owned by the worker
that read it until that worker finishes it; the worker renews its claim every third of a lease, also while
an attempt is in flight or a retry waits. When a process dies (even `kill -9`) its messages stop being
renewed and, a lease later, another worker takes them over and sends them again from the start of its own
schedule: a webhook may arrive twice (with the same `webhook-id`), never not at all.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from gateway.deliveries.signing import TenantSecrets, signed_headers
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.providers.http import UpstreamClient
from gateway.ssrf import AddressRefused
from gateway.store import Delivery, DeliveryStore, Message

logger = logging.getLogger(__name__)
_READ_BLOCK_MS = 1_000
_STORE_PAUSE_SECONDS = 1.0  # between tries while the store is unavailable


@dataclass(frozen=True)
class RetryPolicy:
    """When a webhook is attempted: once if not terminal; a terminal one at once, then after `first_delay`
    seconds, doubling each time, with a last attempt `window` seconds after it was enqueued."""

    first_delay: float
    window: float

    def attempt_times(self, start: float, delivery: Delivery) -> list[float]:
        times = [start]
        if not delivery.terminal:
            return times
        deadline = delivery.enqueued_at + self.window
        delay = self.first_delay
        while times[-1] + delay < deadline:
            times.append(times[-1] + delay)
            delay *= 2
        if times[-1] < deadline:
            times.append(deadline)
        return times


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # no answer, or any other status: worth another attempt
    REFUSED = "refused"  # the address is not allowed: never worth another attempt


@dataclass(frozen=True)
class WorkerLimits:
    lease: float  # a message not renewed for this long is taken over by another worker
    concurrency: int  # messages one worker holds at once


class DeliveryWorker:
    def __init__(
        self,
        store: DeliveryStore,
        secrets: TenantSecrets,
        client: UpstreamClient,
        retry: RetryPolicy,
        limits: WorkerLimits,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._client = client
        self._retry = retry
        self._limits = limits
        self._metrics = metrics
        self._consumer = uuid.uuid4().hex  # a new consumer per process: a dead one's messages are orphaned
        self._held: dict[str, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._reclaim_from = "0-0"  # scans go round the pending entries, so none is left behind a long list

    async def run(self) -> None:
        """Read, renew and reclaim until cancelled; what is in flight then is given up, for another worker to
        take over at its next look rather than a lease later."""
        try:
            await self._guarded(self._store.ensure_group())
            await asyncio.gather(self._read_forever(), self._maintain_forever())
        finally:
            held = dict(self._held)
            for task in held.values():
                task.cancel()
            await asyncio.gather(*held.values(), return_exceptions=True)
            await self._give_up(set(held))
            await self._client.aclose()

    async def _give_up(self, message_ids: set[str]) -> None:
        try:
            released = await self._store.release(self._consumer, message_ids)
        except GatewayError as exc:  # they are taken over when their lease ends instead
            logger.warning("webhooks could not be handed back: %s", exc.detail)
            return
        if released:
            logger.info("%d webhooks handed back for another process to send", len(released))

    async def _read_forever(self) -> None:
        while True:
            room = self._limits.concurrency - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            await self._guarded(self._read(room))

    async def _read(self, room: int) -> None:
        self._start(await self._store.read(self._consumer, room, _READ_BLOCK_MS))

    async def _maintain_forever(self) -> None:
        while True:
            await self._guarded(self._maintain())
            await asyncio.sleep(self._limits.lease / 3)

    async def _maintain(self) -> None:
        """Renew the claim on every held message, stop sending those another worker took over, and take over
        those whose owner stopped renewing them."""
        await self._store.ensure_group()
        held = set(self._held)  # what is read while the renewal is on its way is not judged by it
        mine = await self._store.hold(self._consumer, held)
        for message_id in held - mine:
            if task := self._held.pop(message_id, None):  # not finished meanwhile: another worker took it over
                task.cancel()
        room = self._limits.concurrency - len(self._held)
        if room > 0:
            lease_ms = int(self._limits.lease * 1000)
            self._reclaim_from, orphans = await self._store.reclaim(self._consumer, lease_ms, room, self._reclaim_from)
            self._start(orphans)

    async def _guarded(self, step: Awaitable[None]) -> None:
        try:
            await step
        except GatewayError as exc:  # the store is unavailable: pending messages wait in Redis meanwhile
            logger.warning("webhook delivery paused: %s", exc.detail)
            await asyncio.sleep(_STORE_PAUSE_SECONDS)
        except Exception:  # the loops outlive any one bad step: a worker that stopped would strand its messages
            logger.exception("webhook delivery step failed")
            await asyncio.sleep(_STORE_PAUSE_SECONDS)

    def _start(self, messages: list[Message]) -> None:
        for message_id, delivery in messages:
            if message_id not in self._held:
                self._held[message_id] = asyncio.create_task(self._deliver(message_id, delivery))

    async def _deliver(self, message_id: str, delivery: Delivery) -> None:
        try:
            outcome = Outcome.FAILED
            for at in self._retry.attempt_times(time.time(), delivery):
                await asyncio.sleep(max(at - time.time(), 0))
                outcome = await self._attempt(delivery)
                self._metrics.webhook_attempt(outcome.value)
                if outcome is not Outcome.FAILED:
                    break
            if outcome is Outcome.DELIVERED:
                self._metrics.webhook_delivered(time.time() - delivery.enqueued_at)
            else:
                logger.warning("webhook %s of prediction %s: %s", delivery.webhook_id, delivery.prediction_id, outcome.value)
            await self._store.finish([message_id])
        except GatewayError as exc:  # left pending: a worker takes it over a lease from now
            logger.warning("webhook %s could not be finished: %s", delivery.webhook_id, exc.detail)
        finally:
            if self._held.get(message_id) is asyncio.current_task():
                del self._held[message_id]
            self._room.set()

    async def _attempt(self, delivery: Delivery) -> Outcome:
        secret = await self._secrets.get(delivery.tenant)
        body = delivery.body.encode()
        headers = signed_headers(secret, delivery.webhook_id, delivery.body, time.time())
        try:
            response = await self._client.request("POST", delivery.url, headers=headers, content=body, guarded=True)
        except AddressRefused:
            return Outcome.REFUSED
        except GatewayError:
            return Outcome.FAILED
        return Outcome.DELIVERED if 200 <= response.status < 300 else Outcome.FAILED
