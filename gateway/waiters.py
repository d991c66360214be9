"""In-process waiters woken when any gateway process changes the prediction they wait on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

from gateway.store import follow


class Waiters:
    """Wake-ups for `Prefer: wait` and event streams, fed by the store's change events."""

    def __init__(self, changes: Callable[[], AsyncIterator[str]]) -> None:
        self._changes = changes
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.closed = False  # the process is shutting down: waits end with what there is

    def close(self) -> None:
        """End every wait now and from now on (waiters see `closed` when woken)."""
        self.closed = True
        self._wake_all()

    async def run(self) -> None:
        """Listen for changes until cancelled."""
        await follow("prediction change", self._changes, self._wake, self._wake_all)

    @contextlib.contextmanager
    def watching(self, prediction_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the prediction changes (or may have, after a lost subscription)."""
        event = asyncio.Event()
        self._waiters.setdefault(prediction_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(prediction_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(prediction_id, None)

    def _wake(self, prediction_id: str) -> None:
        for event in self._waiters.get(prediction_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()
