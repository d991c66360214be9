"""Which client webhook events a change of a prediction makes, as Replicate defines them."""

from __future__ import annotations

import enum
from typing import Any

from gateway.status import Status
from gateway.store import StoredPrediction


class Event(enum.StrEnum):
    START = "start"  # the prediction left `starting`
    OUTPUT = "output"  # its output changed
    LOGS = "logs"  # its logs changed
    COMPLETED = "completed"  # it reached a terminal status


# Without `webhook_events_filter` Replicate calls "whenever there are new outputs or the prediction has finished".
DEFAULT_EVENTS = (Event.OUTPUT, Event.COMPLETED)
THROTTLED = frozenset({Event.OUTPUT, Event.LOGS})  # sent at most once per THROTTLE_MS per prediction
THROTTLE_MS = 500


def requested(doc: dict[str, Any]) -> frozenset[Event]:
    """The events a prediction's tenant asked for (none without a webhook)."""
    if not doc.get("webhook"):
        return frozenset()
    return frozenset(Event(name) for name in doc.get("webhook_events_filter") or DEFAULT_EVENTS)


def events_of(before: StoredPrediction, after: StoredPrediction) -> frozenset[Event]:
    """What happened between two states of one prediction, whether asked for or not."""
    happened = set()
    if before.status is Status.STARTING and after.status is not Status.STARTING:
        happened.add(Event.START)
    if before.doc.get("output") != after.doc.get("output"):
        happened.add(Event.OUTPUT)
    if (before.doc.get("logs") or "") != (after.doc.get("logs") or ""):
        happened.add(Event.LOGS)
    if after.status.terminal and not before.status.terminal:
        happened.add(Event.COMPLETED)
    return frozenset(happened)
