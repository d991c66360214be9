"""Following a Redis notification stream for as long as the process lives, resubscribing when it drops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from gateway.errors import StoreError

logger = logging.getLogger(__name__)
_FIRST_RETRY_SECONDS = 0.1
_LAST_RETRY_SECONDS = 2.0


async def follow(
    name: str, stream: Callable[[], AsyncIterator[str]], on_item: Callable[[str], None], on_gap: Callable[[], None]
) -> None:
    """Hand each item of `stream()` to `on_item`; runs until cancelled.

    `stream()` yields an empty string once subscribed. `on_gap` runs then, and whenever the subscription
    drops, because anything may have happened while nobody was listening."""
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            async for item in stream():
                if item:
                    on_item(item)
                else:
                    on_gap()
                    delay = _FIRST_RETRY_SECONDS
        except StoreError as exc:
            logger.warning("%s subscription lost (%s); retrying in %.1fs", name, exc.detail, delay)
        on_gap()
        await asyncio.sleep(delay)
        delay = min(delay * 2, _LAST_RETRY_SECONDS)
