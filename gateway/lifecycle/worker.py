"""The loop every schedule's worker runs: take due ids with a lease, visit each, a bounded number at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.errors import StoreError
from gateway.store import Schedule

logger = logging.getLogger(__name__)
_STORE_RETRY_SECONDS = 1.0


async def work_on(
    schedule: Schedule,
    visit: Callable[[str], Awaitable[None]],
    *,
    tick_seconds: float,
    lease_seconds: float,
    concurrency: int,
) -> None:
    """Visit due ids until cancelled. A visit must end the id's turn (reschedule or remove it); one that raises
    leaves the id leased, so it falls due again when the lease ends. Cancelled (the process shuts down), the
    visits under way are cancelled too and their ids given back, due at once for another process."""
    running: set[asyncio.Task[None]] = set()
    held: dict[str, int] = {}  # ids whose visit has not ended -> the due time their claim gave them
    try:
        while True:
            room = concurrency - len(running)
            now_ms, lease_ms = int(time.time() * 1000), int(lease_seconds * 1000)
            try:
                due = await schedule.claim(now_ms, lease_ms, room) if room else []
            except StoreError as exc:
                logger.warning("schedule %s unavailable (%s)", schedule.key, exc.detail)
                await asyncio.sleep(_STORE_RETRY_SECONDS)
                continue
            for item_id in due:
                held[item_id] = now_ms + lease_ms
                task = asyncio.create_task(_visit(visit, item_id, held))
                running.add(task)
                task.add_done_callback(running.discard)
            if len(due) < room or not room:  # nothing more is due now (or no room): wait for the next tick
                await asyncio.sleep(tick_seconds)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await _give_back(schedule, held)


async def _visit(visit: Callable[[str], Awaitable[None]], item_id: str, held: dict[str, int]) -> None:
    try:
        await visit(item_id)
    except Exception:  # the lease runs out and another turn comes; a bug must not stop the loop
        logger.exception("background work on %s failed; it is retried when its lease ends", item_id)
    held.pop(item_id, None)  # not reached when cancelled: the id is given back


async def _give_back(schedule: Schedule, held: dict[str, int]) -> None:
    try:
        released = await schedule.release(held, int(time.time() * 1000))
    except StoreError as exc:  # their leases run out instead
        logger.warning("schedule %s unavailable (%s): %d ids wait for their leases", schedule.key, exc.detail, len(held))
        return
    if released:
        logger.info("schedule %s: %d ids handed back", schedule.key, released)
