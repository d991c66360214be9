"""The moment a gateway process begins to shut down, told to whatever must end early rather than be cut off."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Draining:
    """Started once, when the server begins its shutdown (SIGTERM), before it stops accepting: readiness fails,
    waiting requests and event streams are answered with what there is, background work is handed back.

    Hooks run synchronously in the order registered; they must only signal (set a flag, cancel a task), so
    starting costs nothing on the serving path and is safe from any place in the event loop."""

    def __init__(self) -> None:
        self.started = False
        self._hooks: list[Callable[[], None]] = []

    def on_start(self, hook: Callable[[], None]) -> None:
        """Run `hook` when draining starts (at once if it has)."""
        self._hooks.append(hook)
        if self.started:
            hook()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        logger.info("shutting down: answering waiting requests and handing background work back")
        for hook in self._hooks:
            hook()
