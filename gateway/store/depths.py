"""How much background work waits in Redis, read for the metrics at scrape time (read-only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleDepth:
    scheduled: int  # every id in the schedule
    overdue: int  # due by now and not leased to a process


@dataclass(frozen=True)
class DeliveryDepth:
    pending: int  # read by a sender and not finished (being delivered, or waiting for a retry)
    lag: int  # not yet read by any sender


@dataclass(frozen=True)
class SlotQueueDepth:
    waiting: int  # in a tenant's line
    dispatching: int  # claimed by a dispatcher, not yet accepted by a server
    running: int  # accepted by a server and not finished


@dataclass(frozen=True)
class QueueDepths:
    """One reading of every queue; each value is the whole deployment's, the same from every process."""

    follow_ups: ScheduleDepth
    deadlines: ScheduleDepth
    deliveries: DeliveryDepth
    slot_queues: dict[str, SlotQueueDepth]  # by queue (= slot-limited provider) name
