"""Dispatch of queued predictions onto pools of one-slot model servers (Cog).

The queue lives in Redis (FIFO, claimed atomically under a lease, taken back from dispatchers that stopped),
so a queued prediction survives a crash and is never run twice: the server's id for a run is the gateway's
prediction id, and Cog's PUT is idempotent while the run is in flight. Servers are chosen round-robin among
the free ones; a 409 or 503 puts the prediction back at the head of the queue. A health watch fails a
prediction whose server died or forgot it, and one that outlived the run timeout, so none stays unfinished
forever. Every change is reported through `report`, the path upstream webhooks take.

A prediction submitted through this process is dispatched as part of the request that created it (the same
`X-Request-Id` upstream and on the log lines), from a bounded in-process map: one that another process
dispatches, or that waited behind more than MAX_REMEMBERED_REQUESTS others, goes out without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from gateway import request_context
from gateway.errors import GatewayError, InvalidInput, UpstreamError
from gateway.providers.base import Prepare, Report, UpstreamPrediction
from gateway.providers.cog.adapter import CogAdapter, ServerBusy, ServerStatus, split_upstream_id, upstream_id
from gateway.status import Status
from gateway.store import QueueStore

logger = logging.getLogger(__name__)

HEALTH_INTERVAL_SECONDS = 1.0
MISSES_BEFORE_LOST = 3
BUSY_BACKOFF_SECONDS = 0.05
DOWN_BACKOFF_SECONDS = 1.0
IDLE_POLL_SECONDS = 0.5
RECOVER_EVERY_TICKS = 5
MAX_DISPATCH_ATTEMPTS = 3  # unforeseen failures before a prediction is failed rather than tried again
MAX_REMEMBERED_REQUESTS = 4096  # request ids of the latest predictions submitted here
HAND_OVER_SECONDS = 5.0  # at shutdown, how long a hand-over to a server under way may take to end


@dataclass
class _Slot:
    server: str
    prediction_id: str | None = None
    accepted: bool = False
    misses: int = 0
    skip_until: float = 0.0
    healthy: bool = True


class SlotDispatcher:
    def __init__(
        self,
        name: str,
        adapter: CogAdapter,
        servers: list[str],
        queue: QueueStore,
        report: Report,
        prepare: Prepare,
        run_timeout: float,
    ) -> None:
        self.name = name
        self.run_timeout = run_timeout
        self._adapter = adapter
        self._queue = queue
        self._report = report
        self._prepare = prepare
        self._slots = [_Slot(server) for server in servers]
        self._next = 0
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: dict[str, str] = {}  # prediction id -> the id of the request that submitted it

    async def submit(self, tenant: str, prediction_id: str) -> None:
        self._remember_request(prediction_id)
        await self._queue.push(tenant, prediction_id)
        self._wake.set()

    async def release(self, upstream: str) -> None:
        """A run ended (its terminal webhook arrived): the server's slot is free again."""
        await self._queue.finished(upstream)
        server, prediction_id = split_upstream_id(upstream)
        for slot in self._slots:
            if slot.server == server and slot.prediction_id == prediction_id:
                self._free(slot)

    async def abandon(self, error: str) -> None:
        """Fail what this process's servers are running: they are about to stop with the gateway."""
        for slot in self._slots:
            if slot.prediction_id is not None and slot.accepted:
                await self._fail(slot, error)

    async def fail_runs_on(self, servers: Collection[str], error: str) -> None:
        """Fail the runs recorded on `servers`, which were just started afresh and so know none of them: the
        gateway process that started those runs was killed together with its servers' state."""
        try:
            lost = [run_id for run_id in await self._queue.running() if split_upstream_id(run_id)[0] in servers]
            for run_id in lost:
                await self._report_failed(run_id, error)
                await self._queue.finished(run_id)
        except GatewayError as exc:
            logger.warning("%s: queue unavailable: %s", self.name, exc.detail)

    async def run(self) -> None:
        """Dispatch and watch until cancelled; then let the hand-overs under way end (for a bounded time) and
        give back what is still claimed, first in line, for another process to dispatch at once."""
        try:
            await asyncio.gather(self._dispatch_loop(), self._watch_loop())
        finally:
            await self._hand_back()

    async def _hand_back(self) -> None:
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=HAND_OVER_SECONDS)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        try:
            released = await self._queue.release()
        except GatewayError as exc:  # its lease runs out instead, and `recover` elsewhere takes the claims back
            logger.warning("%s: queue unavailable: %s", self.name, exc.detail)
            return
        if released:
            logger.info("%s: %d claimed predictions handed back to the queue", self.name, released)

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a wake-up from here on is not lost
            slot = self._free_slot()
            prediction_id = await self._claim_quietly() if slot else None
            if slot is None or prediction_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)
                continue
            slot.prediction_id, slot.accepted, slot.misses = prediction_id, False, 0
            task = asyncio.create_task(self._start_guarded(slot, prediction_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim_quietly(self) -> str | None:
        try:
            return await self._queue.claim()
        except GatewayError as exc:
            logger.warning("%s: queue unavailable: %s", self.name, exc.detail)
            return None

    async def _start_guarded(self, slot: _Slot, prediction_id: str) -> None:
        """`_start`, where anything unforeseen puts the prediction at the back of the queue instead of losing it
        (or blocking the queue), and fails it after MAX_DISPATCH_ATTEMPTS such tries."""
        with request_context.serving(self._requests.get(prediction_id)):
            request_context.tag(prediction_id=prediction_id)
            try:
                await self._start(slot, prediction_id)
            except Exception:
                if slot.accepted:  # the server runs it: its webhooks, the health watch or its deadline settle it
                    logger.exception("%s: recording the start of %s failed", self.name, prediction_id)
                    return
                logger.exception("%s: dispatching %s failed", self.name, prediction_id)
                self._free(slot)
                with contextlib.suppress(GatewayError):
                    await self._retry_or_give_up(prediction_id)

    async def _retry_or_give_up(self, prediction_id: str) -> None:
        if await self._queue.retry_later(prediction_id, MAX_DISPATCH_ATTEMPTS):
            return
        error = f"The gateway could not hand this prediction to a model server ({MAX_DISPATCH_ATTEMPTS} attempts failed)"
        await self._report(prediction_id, UpstreamPrediction("", Status.FAILED, error=error))
        await self._queue.done(prediction_id)

    async def _start(self, slot: _Slot, prediction_id: str) -> None:
        run_id = upstream_id(slot.server, prediction_id)
        try:
            record = await self._report(prediction_id, UpstreamPrediction(run_id, Status.STARTING))
            if record is None or record.status.terminal:  # canceled while queued, or expired
                await self._queue.done(prediction_id)
                self._free(slot)
                return
            started = await self._adapter.start(await self._prepare(record), slot.server)
        except ServerBusy:
            await self._requeue(slot, prediction_id, BUSY_BACKOFF_SECONDS)
            return
        except InvalidInput as exc:
            await self._report(prediction_id, UpstreamPrediction(run_id, Status.FAILED, error=exc.detail.strip()))
            await self._queue.done(prediction_id)
            self._free(slot)
            return
        except UpstreamError as exc:  # the server is down or broken; the health watch tells when it is back
            logger.warning("%s: %s could not take %s: %s", self.name, slot.server, prediction_id, exc.detail)
            slot.healthy = False
            await self._requeue(slot, prediction_id, DOWN_BACKOFF_SECONDS)
            return
        slot.accepted = True
        await self._queue.accepted(prediction_id, started.id, time.time() + self.run_timeout)
        stored = await self._report(prediction_id, started)
        if stored is None or stored.status.terminal:  # canceled (or expired) while it was being handed over
            with contextlib.suppress(GatewayError):
                await self._adapter.cancel(started.id)

    def _remember_request(self, prediction_id: str) -> None:
        request_id = request_context.request_id()
        if request_id is not None:
            self._requests[prediction_id] = request_id
            if len(self._requests) > MAX_REMEMBERED_REQUESTS:
                del self._requests[next(iter(self._requests))]  # the oldest: dicts keep insertion order

    async def _requeue(self, slot: _Slot, prediction_id: str, backoff: float) -> None:
        await self._queue.push_front(prediction_id)
        slot.skip_until = time.monotonic() + backoff
        self._free(slot)

    def _free(self, slot: _Slot) -> None:
        slot.prediction_id, slot.accepted, slot.misses = None, False, 0
        self._wake.set()

    def _free_slot(self) -> _Slot | None:
        now = time.monotonic()
        for offset in range(len(self._slots)):
            slot = self._slots[(self._next + offset) % len(self._slots)]
            if slot.prediction_id is None and slot.healthy and slot.skip_until <= now:
                self._next = (self._next + offset + 1) % len(self._slots)
                return slot
        return None

    async def _watch_loop(self) -> None:
        for tick in itertools.count():
            await self._keep_queue(recover=tick % RECOVER_EVERY_TICKS == 0)
            await asyncio.gather(*(self._check(slot) for slot in self._slots))
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    async def _keep_queue(self, *, recover: bool) -> None:
        """Renew this dispatcher's lease on what it claimed, fail runs past their deadline, and now and then
        take back what stopped dispatchers had claimed."""
        try:
            await self._queue.renew()
            for overdue in await self._queue.overdue(time.time()):
                await self._expire(overdue)
            recovered = await self._queue.recover() if recover else 0
        except GatewayError as exc:
            logger.warning("%s: queue unavailable: %s", self.name, exc.detail)
            return
        if recovered:
            logger.info("%s: %d predictions claimed by a stopped dispatcher are queued again", self.name, recovered)
            self._wake.set()

    async def _check(self, slot: _Slot) -> None:
        status = (await self._adapter.health(slot.server)).status
        was_healthy, slot.healthy = slot.healthy, status.serving
        if slot.healthy and not was_healthy:
            self._wake.set()
        if slot.prediction_id is None or not slot.accepted:
            return
        slot.misses = 0 if status is ServerStatus.BUSY else slot.misses + 1
        if slot.misses >= MISSES_BEFORE_LOST:
            reason = "stopped" if status is ServerStatus.UNREACHABLE else "restarted or lost the run"
            await self._fail(slot, f"The model server {reason} while running this prediction")

    async def _expire(self, run_id: str) -> None:
        """A run outlived the run timeout (or the process that started it): stop it and fail the prediction."""
        with contextlib.suppress(GatewayError):
            await self._adapter.cancel(run_id)
        await self._report_failed(run_id, f"The prediction did not finish within {self.run_timeout:g}s")
        await self.release(run_id)

    async def _fail(self, slot: _Slot, error: str) -> None:
        assert slot.prediction_id is not None
        run_id = upstream_id(slot.server, slot.prediction_id)
        self._free(slot)
        await self._report_failed(run_id, error)
        with contextlib.suppress(GatewayError):
            await self._queue.finished(run_id)

    async def _report_failed(self, run_id: str, error: str) -> None:
        server, prediction_id = split_upstream_id(run_id)
        logger.warning("%s: prediction %s on %s failed: %s", self.name, prediction_id, server, error)
        with contextlib.suppress(GatewayError):
            await self._report(prediction_id, UpstreamPrediction(run_id, Status.FAILED, error=error))
